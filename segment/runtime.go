// Package segment runs segmentation models and the image operations around
// them: the ONNX Runtime session, optical flow, warping, metrics and overlays.
package segment

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// LibraryEnv is the environment variable that names the ONNX Runtime shared library.
const LibraryEnv = "MEDVSEG_ORT_LIB"

// DefaultLibraryPath is the ONNX Runtime library used when neither a flag
// nor LibraryEnv names one. The Makefile sets it at link time to the library
// that `make setup` unpacks into the project.
var DefaultLibraryPath = "libonnxruntime.so.1"

var runtime struct {
	sync.Mutex
	path string
	err  error
}

// LibraryPath picks the ONNX Runtime library: the flag value when set, else
// LibraryEnv, else DefaultLibraryPath.
func LibraryPath(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if env := os.Getenv(LibraryEnv); env != "" {
		return env
	}
	return DefaultLibraryPath
}

// InitRuntime loads the ONNX Runtime shared library at path and creates its
// environment. The runtime is process-wide: later calls with the same path
// return the first result, and a different path is an error.
func InitRuntime(path string) error {
	runtime.Lock()
	defer runtime.Unlock()

	if runtime.path != "" {
		if runtime.path != path {
			return fmt.Errorf("ONNX Runtime is already loaded from %q; cannot also load %q in one process",
				runtime.path, path)
		}
		return runtime.err
	}

	runtime.path = path
	ort.SetSharedLibraryPath(path)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		runtime.err = fmt.Errorf("load ONNX Runtime %q: %w; run `make setup`, or point --ort-lib "+
			"or %s at libonnxruntime.so", path, err, LibraryEnv)
	}

	return runtime.err
}

// RuntimeLibrary returns the path of the loaded ONNX Runtime library, or ""
// before InitRuntime.
func RuntimeLibrary() string {
	runtime.Lock()
	defer runtime.Unlock()
	return runtime.path
}

// RuntimeVersion returns the version of the loaded ONNX Runtime library.
func RuntimeVersion() string {
	if !ort.IsInitialized() {
		return ""
	}
	return ort.GetVersion()
}

// ErrNoCUDA reports that the loaded ONNX Runtime cannot run on an NVIDIA GPU.
var ErrNoCUDA = errors.New("CUDA is not available")

// CheckCUDA tries to enable the CUDA execution provider of the loaded ONNX
// Runtime. It returns nil when the provider loads, else an error wrapping
// ErrNoCUDA with ONNX Runtime's reason and the fix.
func CheckCUDA() error {
	if !ort.IsInitialized() {
		return fmt.Errorf("%w: ONNX Runtime is not loaded", ErrNoCUDA)
	}

	options, err := ort.NewSessionOptions()
	if err != nil {
		return fmt.Errorf("create session options: %w", err)
	}
	defer options.Destroy()

	return appendCUDA(options)
}

// cudaProviderMissing returns an error when no CUDA provider library sits
// beside the loaded ONNX Runtime, as with the CPU build. Checking first keeps
// ONNX Runtime from logging a failed library load on every CPU machine.
func cudaProviderMissing() error {
	dir := filepath.Dir(RuntimeLibrary())
	provider := filepath.Join(dir, "libonnxruntime_providers_cuda.so")
	if _, err := os.Stat(provider); err != nil {
		return fmt.Errorf("no %s beside the loaded library", filepath.Base(provider))
	}
	return nil
}

func cudaError(err error) error {
	return fmt.Errorf("%w with ONNX Runtime %q: %v; on a machine with an NVIDIA GPU run "+
		"`make setup-cuda` and point --ort-lib or %s at the CUDA build it unpacks",
		ErrNoCUDA, RuntimeLibrary(), err, LibraryEnv)
}
