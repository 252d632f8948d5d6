// Compresses one byte plane written by tools/pack_planes.py chunk by chunk (independent frames, as
// smolpack does) with the given libzstd level and parameters; prints the size and the CPU time of
// compression and decompression (each frame is decompressed and compared).
//   cc -O2 -o /tmp/pack_plane_sweep tools/pack_plane_sweep.c -lzstd
//   /tmp/pack_plane_sweep DIR/E.bin DIR/chunks.bin 3                 # level 3
//   /tmp/pack_plane_sweep DIR/E.bin DIR/chunks.bin -131072 1002=1    # entropy only: fastest level,
//                                       literal compression forced on (ZSTD_c_literalCompressionMode)
// Further arguments are ZSTD_cParameter=value pairs (zstd.h numbers: 101 windowLog, 105 minMatch, …).
#include <zstd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu(void) { struct timespec t; clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

static unsigned char *slurp(const char *p, long *n) {
    FILE *f = fopen(p, "rb");
    if (!f) { perror(p); exit(1); }
    fseek(f, 0, SEEK_END); *n = ftell(f); fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n);
    if (fread(b, 1, *n, f) != (size_t)*n) { perror(p); exit(1); }
    fclose(f);
    return b;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: %s PLANE CHUNKS LEVEL [PARAM=VALUE ...]\n", argv[0]); return 2; }
    long n, cn;
    unsigned char *plane = slurp(argv[1], &n);
    long long *ch = (long long *)slurp(argv[2], &cn);
    int level = atoi(argv[3]), chunks = (int)(cn / 16);
    ZSTD_CCtx *c = ZSTD_createCCtx();
    ZSTD_DCtx *d = ZSTD_createDCtx();
    size_t cap = ZSTD_compressBound(64 << 20);
    unsigned char *out = malloc(cap), *back = malloc(64 << 20);
    long long total = 0, raw = 0;
    double tc = 0, td = 0;
    for (int i = 0; i < chunks; i++) {
        long long off = ch[2 * i], len = ch[2 * i + 1];
        ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters);
        ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level);
        for (int a = 4; a < argc; a++) {
            int k, v;
            if (sscanf(argv[a], "%d=%d", &k, &v) != 2) { fprintf(stderr, "bad parameter %s\n", argv[a]); return 2; }
            size_t e = ZSTD_CCtx_setParameter(c, (ZSTD_cParameter)k, v);
            if (ZSTD_isError(e)) { fprintf(stderr, "%s: %s\n", argv[a], ZSTD_getErrorName(e)); return 1; }
        }
        double t0 = cpu();
        size_t z = ZSTD_compress2(c, out, cap, plane + off, len);
        tc += cpu() - t0;
        if (ZSTD_isError(z)) { fprintf(stderr, "%s\n", ZSTD_getErrorName(z)); return 1; }
        t0 = cpu();
        size_t r = ZSTD_decompressDCtx(d, back, len, out, z);
        td += cpu() - t0;
        if (r != (size_t)len || memcmp(back, plane + off, len)) { fprintf(stderr, "round trip differs\n"); return 1; }
        total += (long long)z < len ? (long long)z : len;  // smolpack stores a chunk zstd does not shrink
        raw += len;
    }
    printf("level %d: %lld / %lld bytes = %.2f %% of the plane; compress %.1f s (%.0f MB/s), decompress %.2f s (%.0f MB/s of plane)\n",
           level, total, raw, 100.0 * total / raw, tc, raw / tc / 1e6, td, raw / td / 1e6);
    return 0;
}
