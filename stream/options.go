package stream

import (
	"fmt"
	"math"

	"github.com/medvseg/medvseg/segment"
)

// Options configures a Processor. The zero value of each field selects its default.
type Options struct {
	// KeyframeInterval runs the model at least every N frames; 1 runs it
	// on every frame. Default 5.
	KeyframeInterval int
	// Flow selects the optical flow between keyframes. Default DIS
	// ultrafast at half resolution.
	Flow segment.FlowOptions
	// Threshold is the probability above which a pixel is lesion. Default 0.5.
	Threshold float64
	// Smooth, in [0, 1), blends the mask propagated from the previous frame
	// into each model result with this weight, damping flicker between
	// keyframes. 0 turns smoothing off.
	Smooth float64
	// Drift sets when propagation is judged unreliable and the model runs early.
	Drift DriftOptions
	// Overlay sets how masks are drawn on frames.
	Overlay segment.OverlayOptions
	// RingCapacity is the number of preallocated frames between the decoder
	// and the processor. Default 16.
	RingCapacity int
}

// DriftOptions are the limits past which a propagated frame becomes a
// keyframe. A zero limit takes its default; a negative one turns that check off.
type DriftOptions struct {
	// PhotometricError is the mean absolute grey-level difference (0-255)
	// between a frame and the previous frame warped onto it. A frame is a
	// keyframe when its error is above this floor and above
	// PhotometricRatio times the median error of the recent frames, which
	// catches scene cuts and failed flow whatever the usual level of the
	// video. Default 6.
	PhotometricError float64
	// PhotometricRatio is the factor over the recent median error; default 3.
	PhotometricRatio float64
	// AreaChange is the relative change of the lesion area between a frame
	// and the previous one. Default 0.5.
	AreaChange float64
	// Inconsistency is the share of mask pixels whose flow fails the
	// forward-backward check. The check computes a second flow per frame.
	// Default 0.5.
	Inconsistency float64
	// ConsistencyTolerance is the forward-backward tolerance in pixels. Default 1.
	ConsistencyTolerance float64
}

// Reasons a frame becomes a keyframe.
const (
	ReasonFirst         = "first"
	ReasonInterval      = "interval"
	ReasonPhotometric   = "photometric"
	ReasonAreaChange    = "area-change"
	ReasonInconsistency = "inconsistency"
)

func (o Options) withDefaults() (Options, error) {
	if o.KeyframeInterval == 0 {
		o.KeyframeInterval = 5
	}
	if o.KeyframeInterval < 0 {
		return o, fmt.Errorf("invalid keyframe interval %d: use 1 (every frame) or more", o.KeyframeInterval)
	}
	if o.Flow.Method == "" {
		o.Flow = segment.FlowOptions{Method: segment.FlowDISUltrafast, Scale: 0.5}
	}
	if o.Threshold == 0 {
		o.Threshold = 0.5
	}
	if !(o.Threshold > 0 && o.Threshold < 1) {
		return o, fmt.Errorf("invalid threshold %v: use a probability between 0 and 1", o.Threshold)
	}
	if !(o.Smooth >= 0 && o.Smooth < 1) {
		return o, fmt.Errorf("invalid smoothing weight %v: use a value in [0, 1)", o.Smooth)
	}
	if o.Overlay == (segment.OverlayOptions{}) {
		o.Overlay = segment.DefaultOverlayOptions
	}
	if o.RingCapacity == 0 {
		o.RingCapacity = 16
	}

	d := &o.Drift
	for _, v := range []float64{d.PhotometricError, d.PhotometricRatio, d.AreaChange, d.Inconsistency, d.ConsistencyTolerance} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return o, fmt.Errorf("invalid drift limit %v: use a finite number, or a negative one to turn the check off", v)
		}
	}
	d.PhotometricError = defaultLimit(d.PhotometricError, 6)
	d.PhotometricRatio = defaultLimit(d.PhotometricRatio, 3)
	d.AreaChange = defaultLimit(d.AreaChange, 0.5)
	d.Inconsistency = defaultLimit(d.Inconsistency, 0.5)
	if d.ConsistencyTolerance <= 0 {
		d.ConsistencyTolerance = 1
	}
	return o, nil
}

func defaultLimit(v, fallback float64) float64 {
	if v == 0 {
		return fallback
	}
	return v
}

// newFlowAndOverlay creates the optical flow and the overlay that both loops
// use; the caller closes them.
func newFlowAndOverlay(options Options) (segment.FlowEstimator, *segment.Overlay, error) {
	flow, err := segment.NewFlowEstimator(options.Flow)
	if err != nil {
		return nil, nil, err
	}

	overlay, err := segment.NewOverlay(options.Overlay)
	if err != nil {
		flow.Close()
		return nil, nil, err
	}
	return flow, overlay, nil
}
