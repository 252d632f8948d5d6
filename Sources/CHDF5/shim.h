// HDF5 C API (serial build). Debian installs the headers under hdf5/serial; the include path comes
// from pkg-config (hdf5-serial.pc), so the plain name resolves.
#include <hdf5.h>
