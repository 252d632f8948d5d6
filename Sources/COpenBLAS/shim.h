// OpenBLAS's CBLAS interface (Debian: libopenblas-dev puts cblas.h in the include path via pkg-config).
#include <cblas.h>
