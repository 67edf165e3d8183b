package segment

import (
	"errors"
	"fmt"
	"image"
	"os"
	goruntime "runtime"
	"sync"

	"github.com/rs/zerolog"
	"github.com/rs/zerolog/log"
	ort "github.com/yalue/onnxruntime_go"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/segment/onnx"
)

// ModelOptions sets how LoadModel runs a model.
type ModelOptions struct {
	// Device is auto, cpu or cuda; "" means auto.
	Device Device
	// IntraOpThreads is the number of threads ONNX Runtime uses inside one
	// operator. 0 means ONNX Runtime's default.
	IntraOpThreads int
	// BatchSize is the number of frames per inference call. 0 means the
	// model's static batch size, or 1 when the batch dimension is dynamic.
	BatchSize int
	// Postprocess sets the clean-up of binary masks.
	Postprocess PostprocessOptions
	// Logger receives the device choice; nil means zerolog's global logger.
	Logger *zerolog.Logger
}

// Model is a segmentation network in an ONNX Runtime session, with its
// pre- and post-processing. Input and output tensors are allocated once and
// reused by every call. Its methods are safe for concurrent use but run one
// at a time.
type Model struct {
	mu     sync.Mutex
	path   string
	info   ModelInfo
	device Device
	batch  int

	session *ort.AdvancedSession
	input   *ort.Tensor[float32] // batch x 3 x H x W
	output  *ort.Tensor[float32] // batch x 1 x H x W
	pre     *preprocessor
	post    *postprocessor
	closed  bool
}

// MaxThreads is the largest thread count a model accepts: four per CPU.
// More threads than cores only add switching, and a typo such as 100000
// would otherwise start that many threads.
func MaxThreads() int { return 4 * goruntime.NumCPU() }

// ErrModelClosed is returned by calls on a closed Model.
var ErrModelClosed = errors.New("model is closed")

// LoadModel loads the ONNX model at path into an ONNX Runtime session.
// InitRuntime must have succeeded first. The model must have one float32
// input N x 3 x H x W (RGB) and one float32 output N x 1 x H x W (logits).
func LoadModel(path string, o ModelOptions) (*Model, error) {
	if !ort.IsInitialized() {
		return nil, fmt.Errorf("load model %q: ONNX Runtime is not loaded: call segment.InitRuntime first", path)
	}
	if o.IntraOpThreads < 0 || o.IntraOpThreads > MaxThreads() {
		return nil, fmt.Errorf("load model %q: invalid intra-op thread count %d: expected 0 "+
			"(ONNX Runtime's default) or 1 to %d (4 per CPU)", path, o.IntraOpThreads, MaxThreads())
	}
	if o.BatchSize < 0 {
		return nil, fmt.Errorf("load model %q: invalid batch size %d: expected 0 (the model's) "+
			"or a positive number", path, o.BatchSize)
	}
	device, err := ParseDevice(string(o.Device))
	if err != nil {
		return nil, fmt.Errorf("load model %q: %w", path, err)
	}

	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load model %q: %w; check the path, or export a model with "+
			"`medvseg train-offline`", path, err)
	}

	info, inputShape, outputShape, err := readModelInfo(data)
	if err != nil {
		return nil, fmt.Errorf("load model %q: %w", path, err)
	}
	batch, err := resolveShapes(&info, inputShape, outputShape, o.BatchSize)
	if err != nil {
		return nil, fmt.Errorf("load model %q: %w", path, err)
	}

	m := &Model{path: path, info: info, batch: batch}
	if err := m.open(data, device, o); err != nil {
		m.release()
		return nil, fmt.Errorf("load model %q: %w", path, err)
	}
	return m, nil
}

// resolveShapes checks the tensor shapes against the contract of input
// N x 3 x H x W and output N x 1 x H x W, and returns the batch size to use.
// It takes info.InputSize from the static input shape when the metadata has none.
func resolveShapes(info *ModelInfo, input, output ort.Shape, requested int) (int, error) {
	if len(input) != 4 || (input[1] >= 0 && input[1] != 3) {
		return 0, fmt.Errorf("input %q has shape %v: expected N x 3 x H x W (RGB, NCHW); "+
			"re-export the network with a 3-channel image input", info.InputName, input)
	}
	if len(output) != 4 || (output[1] >= 0 && output[1] != 1) {
		return 0, fmt.Errorf("output %q has shape %v: expected N x 1 x H x W logits; "+
			"re-export the network with a one-channel output", info.OutputName, output)
	}

	staticH, staticW := int(input[2]), int(input[3])
	if info.InputSize.IsZero() {
		if staticH <= 0 || staticW <= 0 {
			return 0, fmt.Errorf("input %q has dynamic size %v and the model has no %s metadata: "+
				"export it with a static input size or with %s set, for example \"256x256\"",
				info.InputName, input, onnx.MetadataInputSize, onnx.MetadataInputSize)
		}
		info.InputSize = codec.Size{Width: staticW, Height: staticH}
	}
	if (staticW > 0 && staticW != info.InputSize.Width) || (staticH > 0 && staticH != info.InputSize.Height) {
		return 0, fmt.Errorf("input %q has shape %v but %s is %s: re-export the model with "+
			"matching values", info.InputName, input, onnx.MetadataInputSize, info.InputSize)
	}
	for i, d := range output[2:] {
		want := []int{info.InputSize.Height, info.InputSize.Width}[i]
		if d >= 0 && int(d) != want {
			return 0, fmt.Errorf("output %q has shape %v: expected the input size %s",
				info.OutputName, output, info.InputSize)
		}
	}

	batch := requested
	switch {
	case input[0] > 0 && batch == 0:
		batch = int(input[0])
	case input[0] > 0 && batch != int(input[0]):
		return 0, fmt.Errorf("input %q has a fixed batch size of %d, not %d: set batch size %d, "+
			"or re-export the model with a dynamic batch dimension", info.InputName, input[0], batch, input[0])
	case batch == 0:
		batch = 1
	}
	return batch, nil
}

// open creates the tensors, the session and the processing stages.
func (m *Model) open(data []byte, device Device, o ModelOptions) error {
	size := m.info.InputSize
	var err error

	height, width := int64(size.Height), int64(size.Width)
	m.input, err = ort.NewEmptyTensor[float32](ort.NewShape(int64(m.batch), 3, height, width))
	if err != nil {
		return fmt.Errorf("allocate input tensor: %w", err)
	}
	m.output, err = ort.NewEmptyTensor[float32](ort.NewShape(int64(m.batch), 1, height, width))
	if err != nil {
		return fmt.Errorf("allocate output tensor: %w", err)
	}

	if m.device, err = m.createSession(data, device, o); err != nil {
		return err
	}

	m.pre = newPreprocessor(size, m.info.Mean, m.info.Std)
	m.post, err = newPostprocessor(size.Width, size.Height, m.info.Threshold, o.Postprocess)
	return err
}

// createSession creates the session on the requested device and returns the
// device it runs on. With DeviceAuto it falls back to the CPU, logging why.
func (m *Model) createSession(data []byte, device Device, o ModelOptions) (Device, error) {
	logger := o.Logger
	if logger == nil {
		logger = &log.Logger
	}

	if device == DeviceCUDA {
		if err := CheckCUDA(); err != nil {
			return "", err
		}
		return DeviceCUDA, m.newSession(data, DeviceCUDA, o.IntraOpThreads)
	}

	if device == DeviceAuto {
		err := CheckCUDA()
		if err == nil {
			if err = m.newSession(data, DeviceCUDA, o.IntraOpThreads); err == nil {
				logger.Info().Str("model", m.path).Str("device", string(DeviceCUDA)).Msg("model runs on the GPU")
				return DeviceCUDA, nil
			}
		}
		logger.Info().Str("model", m.path).Str("device", string(DeviceCPU)).
			Str("ort_library", RuntimeLibrary()).Str("reason", err.Error()).
			Msg("model runs on the CPU because CUDA is not available")
	}

	return DeviceCPU, m.newSession(data, DeviceCPU, o.IntraOpThreads)
}

func (m *Model) newSession(data []byte, device Device, threads int) error {
	options, err := newSessionOptions(device, threads)
	if err != nil {
		return err
	}
	defer options.Destroy()

	session, err := ort.NewAdvancedSessionWithONNXData(data,
		[]string{m.info.InputName}, []string{m.info.OutputName},
		[]ort.Value{m.input}, []ort.Value{m.output}, options)
	if err != nil {
		return fmt.Errorf("create ONNX Runtime session on %s: %w", device, err)
	}
	m.session = session
	return nil
}

// Info returns the model's tensor names, input size, normalisation and threshold.
func (m *Model) Info() ModelInfo { return m.info }

// Device returns the device the model runs on: cpu or cuda, never auto.
func (m *Model) Device() Device { return m.device }

// BatchSize returns the number of frames one inference call processes.
func (m *Model) BatchSize() int { return m.batch }

// Predict segments frames. For frame i it fills probs[i] with the
// probability map and masks[i] with the binary mask (0 or 255), both at the
// frame's size. probs or masks may be nil to skip that output. Otherwise it
// must have one entry per frame: a nil entry is allocated, and an existing
// one is resized, reusing its buffer.
func (m *Model) Predict(frames []*codec.Frame, probs []*Map, masks []*image.Gray) error {
	if err := checkOutputs(len(frames), len(probs), len(masks)); err != nil {
		return err
	}

	return m.infer(frames, func(i int, logits []float32) error {
		var prob *Map
		var mask *image.Gray
		if probs != nil {
			if probs[i] == nil {
				probs[i] = NewMap(0, 0)
			}
			prob = probs[i]
		}
		if masks != nil {
			if masks[i] == nil {
				masks[i] = &image.Gray{}
			}
			mask = masks[i]
		}
		return m.post.run(logits, frames[i].Width, frames[i].Height, prob, mask)
	})
}

// Logits runs the network on frames and copies its raw output for frame i
// into logits[i], at the network's input size. A nil entry is allocated.
func (m *Model) Logits(frames []*codec.Frame, logits []*Map) error {
	if len(logits) != len(frames) {
		return fmt.Errorf("%d logit maps for %d frames: pass one map (or nil) per frame", len(logits), len(frames))
	}

	size := m.info.InputSize
	return m.infer(frames, func(i int, values []float32) error {
		if logits[i] == nil {
			logits[i] = NewMap(0, 0)
		}
		logits[i].Resize(size.Width, size.Height)
		copy(logits[i].Pix, values)
		return nil
	})
}

func checkOutputs(frames, probs, masks int) error {
	if probs != 0 && probs != frames {
		return fmt.Errorf("%d probability maps for %d frames: pass nil or one map per frame", probs, frames)
	}
	if masks != 0 && masks != frames {
		return fmt.Errorf("%d masks for %d frames: pass nil or one mask per frame", masks, frames)
	}
	return nil
}

// infer runs the network on frames in batches and calls use with each
// frame's index and logits. A final partial batch still costs a full batch,
// because the session's tensors have a fixed batch size.
func (m *Model) infer(frames []*codec.Frame, use func(i int, logits []float32) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()

	if m.closed {
		return ErrModelClosed
	}

	plane := m.info.InputSize.Width * m.info.InputSize.Height
	input, output := m.input.GetData(), m.output.GetData()

	for start := 0; start < len(frames); start += m.batch {
		end := min(start+m.batch, len(frames))

		for i := start; i < end; i++ {
			slot := i - start
			if err := m.pre.run(frames[i], input[slot*3*plane:(slot+1)*3*plane]); err != nil {
				return fmt.Errorf("preprocess frame %d: %w", frames[i].Index, err)
			}
		}

		if err := m.session.Run(); err != nil {
			return fmt.Errorf("run model %q on frames %d-%d: %w",
				m.path, frames[start].Index, frames[end-1].Index, err)
		}

		for i := start; i < end; i++ {
			slot := i - start
			if err := use(i, output[slot*plane:(slot+1)*plane]); err != nil {
				return fmt.Errorf("postprocess frame %d: %w", frames[i].Index, err)
			}
		}
	}
	return nil
}

// Close destroys the session, its tensors and the OpenCV buffers. Calls
// after the first return nil.
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()

	if m.closed {
		return nil
	}
	m.closed = true
	return m.release()
}

func (m *Model) release() error {
	var errs []error
	if m.session != nil {
		errs = append(errs, m.session.Destroy())
		m.session = nil
	}
	if m.input != nil {
		errs = append(errs, m.input.Destroy())
		m.input = nil
	}
	if m.output != nil {
		errs = append(errs, m.output.Destroy())
		m.output = nil
	}
	if m.pre != nil {
		m.pre.close()
		m.pre = nil
	}
	if m.post != nil {
		m.post.close()
		m.post = nil
	}
	return errors.Join(errs...)
}
