// HDF5 C API (serial build). Debian installs the headers under hdf5/serial; the include path comes
// from pkg-config (hdf5-serial.pc), so the plain name resolves.
#include <hdf5.h>

// The type ids below are macros over library globals (after H5open); Swift cannot import the
// macros, and reads of the mutable globals are rejected under strict concurrency.
static inline hid_t smol_h5t_native_float(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t smol_h5t_native_double(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t smol_h5t_native_llong(void) { return H5T_NATIVE_LLONG; }
static inline hid_t smol_h5t_c_s1(void) { return H5T_C_S1; }
