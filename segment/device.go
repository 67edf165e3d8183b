package segment

import (
	"fmt"
	"strings"

	ort "github.com/yalue/onnxruntime_go"
)

// Device is the hardware a model runs on.
type Device string

// Devices that ModelOptions accepts.
const (
	// DeviceAuto picks CUDA when the loaded ONNX Runtime has a working CUDA
	// provider, else the CPU.
	DeviceAuto Device = "auto"
	DeviceCPU  Device = "cpu"
	DeviceCUDA Device = "cuda"
)

// ParseDevice parses "auto", "cpu" or "cuda"; "" means auto.
func ParseDevice(s string) (Device, error) {
	switch d := Device(strings.ToLower(strings.TrimSpace(s))); d {
	case "", DeviceAuto:
		return DeviceAuto, nil
	case DeviceCPU, DeviceCUDA:
		return d, nil
	default:
		return "", fmt.Errorf("invalid device %q: expected auto, cpu or cuda", s)
	}
}

// newSessionOptions returns ONNX Runtime session options for a concrete
// device (cpu or cuda) and intra-op thread count (0 means ONNX Runtime's
// default). The caller destroys them.
func newSessionOptions(device Device, threads int) (*ort.SessionOptions, error) {
	options, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("create ONNX Runtime session options: %w", err)
	}

	if err := configureSession(options, device, threads); err != nil {
		options.Destroy()
		return nil, err
	}
	return options, nil
}

func configureSession(options *ort.SessionOptions, device Device, threads int) error {
	if threads > 0 {
		if err := options.SetIntraOpNumThreads(threads); err != nil {
			return fmt.Errorf("set %d intra-op threads: %w", threads, err)
		}
	}

	// Idle intra-op threads would otherwise spin between calls and take CPU
	// time from optical flow, which runs beside inference in the real-time loop.
	if err := options.AddSessionConfigEntry("session.intra_op.allow_spinning", "0"); err != nil {
		return fmt.Errorf("disable intra-op thread spinning: %w", err)
	}

	if device != DeviceCUDA {
		return nil
	}

	// TODO: this CUDA path has not run on a GPU. It needs an ONNX Runtime
	// built with CUDA, such as Microsoft's onnxruntime-linux-x64-gpu release.
	// The 1.29 library that `make setup-cuda` unpacks has no built-in CUDA
	// provider: its libonnxruntime_providers_cuda.so is a plugin provider
	// (it exports CreateEpFactories) that needs the execution-provider device
	// API, which onnxruntime_go v1.27.0 does not wrap.
	return appendCUDA(options)
}

// appendCUDA adds the CUDA execution provider to options, or returns an
// error wrapping ErrNoCUDA with the reason and the fix.
func appendCUDA(options *ort.SessionOptions) error {
	if err := cudaProviderMissing(); err != nil {
		return cudaError(err)
	}
	cuda, err := ort.NewCUDAProviderOptions()
	if err != nil {
		return cudaError(err)
	}
	defer cuda.Destroy()

	if err := options.AppendExecutionProviderCUDA(cuda); err != nil {
		return cudaError(err)
	}
	return nil
}
