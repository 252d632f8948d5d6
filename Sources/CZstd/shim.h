// libzstd's one-shot and context API (Debian: libzstd-dev; found through pkg-config "libzstd").
#include <zstd.h>
