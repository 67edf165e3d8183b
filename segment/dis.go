package segment

/*
#cgo pkg-config: opencv4
#cgo CXXFLAGS: -std=c++11
#include <stdlib.h>
#include "dis.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"unsafe"

	"gocv.io/x/gocv"

	"github.com/medvseg/medvseg/codec"
)

// DISPreset selects a speed and quality trade-off of OpenCV's DIS optical
// flow. The values are those of cv::DISOpticalFlow::PRESET_*.
type DISPreset int

// DIS presets, fastest first.
const (
	DISUltrafast DISPreset = 0
	DISFast      DISPreset = 1
	DISMedium    DISPreset = 2
)

func (p DISPreset) String() string {
	switch p {
	case DISUltrafast:
		return "ultrafast"
	case DISFast:
		return "fast"
	case DISMedium:
		return "medium"
	}
	return fmt.Sprintf("DISPreset(%d)", int(p))
}

// disHandles counts the DIS instances created and not yet closed, so tests
// can check that every handle is released.
var disHandles atomic.Int64

// DISFlow computes dense optical flow with OpenCV's Dense Inverse Search
// (cv::DISOpticalFlow). It is not safe for concurrent use.
type DISFlow struct {
	handle   C.DISFlowHandle
	preset   DISPreset
	pipeline *flowPipeline
}

var _ FlowEstimator = (*DISFlow)(nil)

// NewDISFlow creates a DIS estimator that runs at scale times the frame size
// (in (0, 1], 0 means 1).
func NewDISFlow(preset DISPreset, scale float64) (*DISFlow, error) {
	if preset < DISUltrafast || preset > DISMedium {
		return nil, fmt.Errorf("invalid DIS preset %d: expected %d (ultrafast), %d (fast) or %d (medium)",
			int(preset), DISUltrafast, DISFast, DISMedium)
	}

	pipeline, err := newFlowPipeline(scale)
	if err != nil {
		return nil, err
	}

	var message *C.char
	handle := C.dis_new(C.int(preset), &message)
	if handle == nil {
		pipeline.close()
		return nil, fmt.Errorf("create DIS flow with preset %s: %w", preset, cError(message))
	}
	disHandles.Add(1)

	return &DISFlow{handle: handle, preset: preset, pipeline: pipeline}, nil
}

// Compute writes the flow from frame `from` to frame `to` into out. See
// FlowEstimator.
func (d *DISFlow) Compute(from, to *codec.Frame, out *FlowField) error {
	if d.handle == nil {
		return errors.New("DIS flow: estimator is closed")
	}
	return d.pipeline.run("DIS "+d.preset.String(), d, from, to, out)
}

func (d *DISFlow) calc(from, to gocv.Mat, flow *gocv.Mat) error {
	message := C.dis_calc(d.handle, unsafe.Pointer(from.Ptr()), unsafe.Pointer(to.Ptr()), unsafe.Pointer(flow.Ptr()))
	if message != nil {
		return cError(message)
	}
	return nil
}

// Close releases the DIS instance and the buffers. Calling it again does nothing.
func (d *DISFlow) Close() error {
	if d.handle == nil {
		return nil
	}
	C.dis_close(d.handle)
	d.handle = nil
	disHandles.Add(-1)
	d.pipeline.close()
	return nil
}

// cError turns a message allocated by the C++ wrapper into an error and frees it.
func cError(message *C.char) error {
	if message == nil {
		return errors.New("OpenCV failed without a message")
	}
	defer C.free(unsafe.Pointer(message))
	return errors.New(strings.TrimSpace(C.GoString(message)))
}
