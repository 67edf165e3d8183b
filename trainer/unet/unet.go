// Package unet is the U-Net student of medvseg, trained on libtorch (PyTorch's
// C++ library) through a small cgo shim over the stable torch::nn C++ API.
//
// # Network
//
// For encoder channels c1..cL (default 16, 32, 64, 128, so L = 4), level k
// is a block of two 3x3 convolutions (padding 1, no bias), each followed by
// batch norm (eps 1e-5, momentum 0.1) and ReLU. Levels 2..L start with a 2x2
// max-pool of stride 2. The decoder runs from level L-1 up to level 1: it
// upsamples bilinearly (align_corners=false) to the size of encoder level
// k's output, concatenates that skip after the upsampled tensor on the
// channel axis, and applies a block with c(k+1)+ck inputs and ck outputs. A
// 1x1 convolution with bias maps c1 channels to one logit channel. When the
// input's sides are multiples of 2^(L-1), every upsampling has scale 2.
//
// # Input and output
//
// Input: float32 NCHW, 3 channels in RGB order, already normalised. Output:
// float32 N x 1 x H x W logits, the probability being sigmoid(logit).
//
// # Parameter names
//
// Names follow PyTorch's state_dict convention, so a mismatch is found by
// name in checkpoints and in the ONNX export:
//
//	enc{k}.conv{j}.weight             [ck, in, 3, 3]  in = 3 for k = 1, else c(k-1), when j = 1; ck when j = 2
//	enc{k}.bn{j}.weight, .bias        [ck]            batch norm scale and shift
//	enc{k}.bn{j}.running_mean         [ck]            buffer
//	enc{k}.bn{j}.running_var          [ck]            buffer
//	enc{k}.bn{j}.num_batches_tracked  []              buffer, int64 in libtorch
//	dec{k}.conv1.weight               [ck, c(k+1)+ck, 3, 3]   k = 1..L-1
//	dec{k}.conv2.weight               [ck, ck, 3, 3]
//	dec{k}.bn{j}.*                    as for enc
//	head.weight                       [1, c1, 1, 1]
//	head.bias                         [1]
//
// with k the level and j = 1 or 2. Model.Tensors lists every name with its
// shape: parameters first in the order the forward pass uses them (enc1..encL,
// decL-1..dec1, head), then the buffers in the same module order.
// Model.ReadTensor copies any of them out as float32.
package unet

/*
#cgo CXXFLAGS: -std=c++17 -O2 -I/usr/include/torch/csrc/api/include -Wno-deprecated-declarations
#cgo LDFLAGS: -ltorch -ltorch_cpu -lc10
#include <stdlib.h>
#include "torch_shim.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"unsafe"
)

// DefaultChannels are the encoder channels of the default network.
var DefaultChannels = []int{16, 32, 64, 128}

// ErrClosed is returned by every method of a closed Model.
var ErrClosed = errors.New("unet: model is closed")

// Config sets up a Model.
type Config struct {
	// Channels are the encoder channels per level, at least 2 levels;
	// nil means DefaultChannels.
	Channels []int
	// RandomSeed seeds libtorch's generator before the weights are
	// initialised, so the same seed gives the same initial weights.
	RandomSeed uint64
	// Threads is the number of libtorch intra-op threads. Zero means 1,
	// libtorch's own default on this build.
	Threads int
	// LearningRate and WeightDecay set up AdamW (betas 0.9, 0.999, eps 1e-8).
	LearningRate float64
	WeightDecay  float64
}

// LossWeights weigh the three loss terms in the total loss.
type LossWeights struct {
	BCE      float32
	Dice     float32
	Boundary float32
}

// Loss holds the total loss and its three unweighted terms, each a mean
// over the batch:
//   - BCE: binary cross-entropy with logits over all pixels;
//   - Dice: soft Dice loss 1 - (2*sum(p*g)+1)/(sum(p)+sum(g)+1) per image;
//   - Boundary: BCE averaged over the pixels within 2 pixels of the
//     ground-truth boundary (dilation minus erosion of the mask), 0 when no
//     mask in the batch has a boundary.
//
// The boundary term is a band-restricted BCE rather than a loss weighted by
// a signed distance map of the mask. A distance-map loss needs a distance
// transform of every augmented mask at every step and is unbounded below,
// so it is usually phased in against a region loss. The band BCE is
// bounded, needs no schedule and costs two max-pools.
type Loss struct {
	Total    float32
	BCE      float32
	Dice     float32
	Boundary float32
}

// Batch is a batch of N images and masks of Height x Width pixels.
type Batch struct {
	N      int
	Height int
	Width  int
	// Images are N x 3 x Height x Width float32 values, RGB, normalised.
	Images []float32
	// Masks are N x 1 x Height x Width values, 0 or 1.
	Masks []float32
}

func (b Batch) validate(needMasks bool) error {
	if b.N <= 0 || b.Height <= 0 || b.Width <= 0 {
		return fmt.Errorf("unet: invalid batch of %d images of %dx%d", b.N, b.Width, b.Height)
	}

	pixels := b.N * b.Height * b.Width
	if len(b.Images) != 3*pixels {
		return fmt.Errorf("unet: batch of %d images of %dx%d needs %d image values, got %d",
			b.N, b.Width, b.Height, 3*pixels, len(b.Images))
	}
	if needMasks && len(b.Masks) != pixels {
		return fmt.Errorf("unet: batch of %d masks of %dx%d needs %d mask values, got %d",
			b.N, b.Width, b.Height, pixels, len(b.Masks))
	}
	return nil
}

// TensorInfo describes one named parameter or buffer.
type TensorInfo struct {
	Name  string
	Shape []int
	// IsBuffer is true for batch norm statistics, which are not trained by
	// the optimizer.
	IsBuffer bool
}

// Len returns the number of elements.
func (t TensorInfo) Len() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Model is a U-Net with its AdamW optimizer in libtorch memory. Close frees
// it. A Model is not safe for concurrent use.
//
// Every libtorch call of a Model runs on one goroutine locked to its OS
// thread. Debian's libtorch 1.13 parallelises with OpenMP, which keeps the
// thread count and a pool of worker threads per calling thread. Calls from
// whichever thread Go picks would start new pools and malloc arenas, and
// memory would grow with every new thread.
type Model struct {
	handle   *C.ms_unet
	channels []int
	tensors  []TensorInfo
	index    map[string]int
	calls    chan func()
	returned chan struct{}
}

// serve runs the model's libtorch calls on a locked OS thread until calls
// is closed.
func (m *Model) serve() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	for call := range m.calls {
		call()
		m.returned <- struct{}{}
	}
}

// do runs call on the model's libtorch thread and waits for it.
func (m *Model) do(call func()) {
	m.calls <- call
	<-m.returned
}

// New builds a U-Net with freshly initialised weights (libtorch's default
// initialisation for Conv2d and BatchNorm2d).
func New(config Config) (*Model, error) {
	channels := config.Channels
	if channels == nil {
		channels = DefaultChannels
	}
	if err := validateChannels(channels); err != nil {
		return nil, err
	}

	threads := config.Threads
	if threads == 0 {
		threads = 1
	}
	if threads < 0 {
		return nil, fmt.Errorf("unet: invalid thread count %d: must be positive", threads)
	}

	cChannels := make([]C.int64_t, len(channels))
	for i, c := range channels {
		cChannels[i] = C.int64_t(c)
	}

	m := &Model{
		channels: slices.Clone(channels),
		index:    map[string]int{},
		calls:    make(chan func()),
		returned: make(chan struct{}),
	}
	go m.serve()

	var err error
	m.do(func() {
		err = shimError(C.ms_unet_new(&cChannels[0], C.int(len(channels)), C.uint64_t(config.RandomSeed),
			C.int(threads), C.double(config.LearningRate), C.double(config.WeightDecay), &m.handle))
	})
	if err != nil {
		close(m.calls)
		return nil, fmt.Errorf("unet: create model with channels %v: %w", channels, err)
	}

	if err := m.loadTensorInfo(); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

func validateChannels(channels []int) error {
	if len(channels) < 2 {
		return fmt.Errorf("unet: invalid channels %v: need at least 2 levels", channels)
	}
	for _, c := range channels {
		if c <= 0 {
			return fmt.Errorf("unet: invalid channels %v: every level needs a positive channel count", channels)
		}
	}
	return nil
}

func (m *Model) loadTensorInfo() error {
	count := int(C.ms_unet_tensor_count(m.handle))
	for i := range count {
		var name *C.char
		var dims [8]C.int64_t
		var ndim, isBuffer C.int
		var err error
		m.do(func() {
			err = shimError(C.ms_unet_tensor_info(m.handle, C.int(i), &name, &dims[0], &ndim, &isBuffer))
		})
		if err != nil {
			return fmt.Errorf("unet: describe tensor %d: %w", i, err)
		}

		info := TensorInfo{Name: C.GoString(name), Shape: make([]int, int(ndim)), IsBuffer: isBuffer != 0}
		for d := range info.Shape {
			info.Shape[d] = int(dims[d])
		}
		m.index[info.Name] = i
		m.tensors = append(m.tensors, info)
	}
	return nil
}

// Close frees the model and its optimizer. Later calls do nothing.
func (m *Model) Close() error {
	if m.handle == nil {
		return nil
	}

	m.do(func() { C.ms_unet_free(m.handle) })
	m.handle = nil
	close(m.calls)
	return nil
}

// Channels returns the encoder channels per level.
func (m *Model) Channels() []int { return slices.Clone(m.channels) }

// Threads returns the number of threads libtorch uses for this model's calls.
func (m *Model) Threads() (int, error) {
	if m.handle == nil {
		return 0, ErrClosed
	}
	var threads C.int
	m.do(func() { threads = C.ms_unet_threads(m.handle) })
	return int(threads), nil
}

// TrainStep runs one training step on the batch: forward pass in training
// mode (batch norm uses and updates batch statistics), loss, backward pass
// and an AdamW update. It returns the loss before the update and the batch
// Dice of logits > 0 against the masks (1 when both are empty).
func (m *Model) TrainStep(batch Batch, weights LossWeights) (Loss, float32, error) {
	if m.handle == nil {
		return Loss{}, 0, ErrClosed
	}
	if err := batch.validate(true); err != nil {
		return Loss{}, 0, err
	}

	w := weights.array()
	var parts [C.MS_LOSS_PARTS]C.float
	var dice C.float
	var err error
	m.do(func() {
		err = shimError(C.ms_unet_train_step(m.handle, cFloats(batch.Images), cFloats(batch.Masks),
			C.int64_t(batch.N), C.int64_t(batch.Height), C.int64_t(batch.Width), &w[0], &parts[0], &dice))
	})
	if err != nil {
		return Loss{}, 0, fmt.Errorf("unet: training step on %d images of %dx%d: %w",
			batch.N, batch.Width, batch.Height, err)
	}
	return lossFrom(parts), float32(dice), nil
}

// Forward runs the network in evaluation mode (batch norm uses its running
// statistics, no gradients) and writes N x 1 x H x W logits into logits,
// which must have that length. When batch.Masks is set it also returns the
// loss against them; otherwise the Loss is zero.
func (m *Model) Forward(batch Batch, weights LossWeights, logits []float32) (Loss, error) {
	if m.handle == nil {
		return Loss{}, ErrClosed
	}
	withMasks := batch.Masks != nil
	if err := batch.validate(withMasks); err != nil {
		return Loss{}, err
	}
	if want := batch.N * batch.Height * batch.Width; len(logits) != want {
		return Loss{}, fmt.Errorf("unet: logits buffer has %d values, need %d", len(logits), want)
	}

	w := weights.array()
	var parts [C.MS_LOSS_PARTS]C.float
	var masks *C.float
	if withMasks {
		masks = cFloats(batch.Masks)
	}
	var err error
	m.do(func() {
		err = shimError(C.ms_unet_forward(m.handle, cFloats(batch.Images), masks, C.int64_t(batch.N),
			C.int64_t(batch.Height), C.int64_t(batch.Width), &w[0], cFloats(logits), &parts[0]))
	})
	if err != nil {
		return Loss{}, fmt.Errorf("unet: forward pass on %d images of %dx%d: %w",
			batch.N, batch.Width, batch.Height, err)
	}
	return lossFrom(parts), nil
}

// SetLearningRate sets AdamW's learning rate for the next steps.
func (m *Model) SetLearningRate(lr float64) error {
	if m.handle == nil {
		return ErrClosed
	}
	var err error
	m.do(func() { err = shimError(C.ms_unet_set_learning_rate(m.handle, C.double(lr))) })
	if err != nil {
		return fmt.Errorf("unet: set learning rate %v: %w", lr, err)
	}
	return nil
}

// Tensors lists every named parameter and buffer with its shape; see the
// package documentation for the naming scheme.
func (m *Model) Tensors() []TensorInfo {
	out := make([]TensorInfo, len(m.tensors))
	for i, t := range m.tensors {
		out[i] = TensorInfo{Name: t.Name, Shape: slices.Clone(t.Shape), IsBuffer: t.IsBuffer}
	}
	return out
}

func (m *Model) lookup(name string) (int, TensorInfo, error) {
	if m.handle == nil {
		return 0, TensorInfo{}, ErrClosed
	}
	i, ok := m.index[name]
	if !ok {
		return 0, TensorInfo{}, fmt.Errorf("unet: no parameter or buffer named %q; Model.Tensors lists them", name)
	}
	return i, m.tensors[i], nil
}

// ReadTensor copies the named parameter or buffer out as float32 values in
// row-major order, into dst when it has the right length, else into a new
// slice, which it returns.
func (m *Model) ReadTensor(name string, dst []float32) ([]float32, error) {
	i, info, err := m.lookup(name)
	if err != nil {
		return nil, err
	}
	if len(dst) != info.Len() {
		dst = make([]float32, info.Len())
	}
	if info.Len() == 0 {
		return dst, nil
	}

	m.do(func() {
		err = shimError(C.ms_unet_tensor_read(m.handle, C.int(i), cFloats(dst), C.int64_t(len(dst))))
	})
	if err != nil {
		return nil, fmt.Errorf("unet: read %s: %w", name, err)
	}
	return dst, nil
}

// WriteTensor overwrites the named parameter or buffer with float32 values
// in row-major order; int64 buffers receive the values rounded.
func (m *Model) WriteTensor(name string, values []float32) error {
	i, info, err := m.lookup(name)
	if err != nil {
		return err
	}
	if len(values) != info.Len() {
		return fmt.Errorf("unet: write %s: got %d values for shape %v (%d values)",
			name, len(values), info.Shape, info.Len())
	}
	if info.Len() == 0 {
		return nil
	}

	m.do(func() {
		err = shimError(C.ms_unet_tensor_write(m.handle, C.int(i), cFloats(values), C.int64_t(len(values))))
	})
	if err != nil {
		return fmt.Errorf("unet: write %s: %w", name, err)
	}
	return nil
}

// adamwState is AdamW's state for one parameter.
type adamwState struct {
	Step     int64
	ExpAvg   []float32
	ExpAvgSq []float32
}

// readAdamW returns the optimizer state of a parameter, or ok false before
// the parameter's first step.
func (m *Model) readAdamW(name string) (state adamwState, ok bool, err error) {
	i, info, err := m.lookup(name)
	if err != nil {
		return adamwState{}, false, err
	}
	state.ExpAvg = make([]float32, info.Len())
	state.ExpAvgSq = make([]float32, info.Len())

	var step C.int64_t
	var present C.int
	m.do(func() {
		err = shimError(C.ms_unet_adamw_read(m.handle, C.int(i), cFloats(state.ExpAvg), cFloats(state.ExpAvgSq),
			C.int64_t(info.Len()), &step, &present))
	})
	if err != nil {
		return adamwState{}, false, fmt.Errorf("unet: read AdamW state of %s: %w", name, err)
	}
	state.Step = int64(step)
	return state, present != 0, nil
}

func (m *Model) writeAdamW(name string, state adamwState) error {
	i, info, err := m.lookup(name)
	if err != nil {
		return err
	}
	if len(state.ExpAvg) != info.Len() || len(state.ExpAvgSq) != info.Len() {
		return fmt.Errorf("unet: write AdamW state of %s: moments have %d and %d values, shape %v needs %d",
			name, len(state.ExpAvg), len(state.ExpAvgSq), info.Shape, info.Len())
	}

	m.do(func() {
		err = shimError(C.ms_unet_adamw_write(m.handle, C.int(i), cFloats(state.ExpAvg), cFloats(state.ExpAvgSq),
			C.int64_t(info.Len()), C.int64_t(state.Step)))
	})
	if err != nil {
		return fmt.Errorf("unet: write AdamW state of %s: %w", name, err)
	}
	return nil
}

func (w LossWeights) array() [3]C.float {
	return [3]C.float{C.float(w.BCE), C.float(w.Dice), C.float(w.Boundary)}
}

func lossFrom(parts [C.MS_LOSS_PARTS]C.float) Loss {
	return Loss{
		Total:    float32(parts[C.MS_LOSS_TOTAL]),
		BCE:      float32(parts[C.MS_LOSS_BCE]),
		Dice:     float32(parts[C.MS_LOSS_DICE]),
		Boundary: float32(parts[C.MS_LOSS_BOUNDARY]),
	}
}

// cFloats passes a Go slice to C for the duration of one call; the shim
// keeps no pointer to it. The closures passed to do keep the slices alive.
func cFloats(values []float32) *C.float {
	return (*C.float)(unsafe.Pointer(unsafe.SliceData(values)))
}

// shimError converts the shim's malloc'd error message to a Go error and
// frees it.
func shimError(message *C.char) error {
	if message == nil {
		return nil
	}
	defer C.free(unsafe.Pointer(message))
	return errors.New(C.GoString(message))
}
