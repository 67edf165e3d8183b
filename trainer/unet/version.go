package unet

// #cgo CFLAGS: -I/usr/include/torch/csrc/api/include
// #include <torch/version.h>
// static const char *ms_torch_version(void) { return TORCH_VERSION; }
import "C"

// Version returns the version that the libtorch headers this package was
// built against declare. Debian's libtorch-dev 1.13.1 declares "1.13.0".
func Version() string {
	return C.GoString(C.ms_torch_version())
}
