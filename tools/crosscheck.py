#!/usr/bin/env python3
"""Outside readers agree with smolconv: runs every tools/crosscheck/check_*.py.

Each check builds its inputs with the smolconv binary (.build/debug/smolconv unless SMOLCONV is
set) and reads them back with a library nobody here wrote (gguf-py, safetensors, numpy, h5py).
Prints one line per check and a closing 'N passed, N failed, N skipped' line; exits non-zero on any
failure. A check whose outside library is missing prints "skipped: …" and counts as skipped.
"""
import glob, os, subprocess, sys, time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
env = dict(os.environ)
env.setdefault("SMOLCONV", os.path.join(root, ".build", "debug", "smolconv"))
passed = failed = skipped = 0
for script in sorted(glob.glob(os.path.join(root, "tools", "crosscheck", "check_*.py"))):
    name = os.path.basename(script)
    t = time.time()
    r = subprocess.run([sys.executable, script], cwd=root, env=env, capture_output=True, text=True)
    dt = time.time() - t
    if r.returncode == 0 and r.stdout.lstrip().startswith("skipped"):
        # A check whose outside library is not installed here (mlx-lm, bitsandbytes: not in CI).
        skipped += 1
        print(f"crosscheck {name}: {r.stdout.strip().splitlines()[0]}")
    elif r.returncode == 0:
        passed += 1
        print(f"crosscheck {name}: ok ({dt:.1f} s)")
    else:
        failed += 1
        print(f"crosscheck {name}: FAILED ({dt:.1f} s)")
        print(r.stdout[-4000:])
        print(r.stderr[-4000:])
print(f"crosscheck: {passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed else 0)
