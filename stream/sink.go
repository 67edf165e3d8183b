package stream

import (
	"image"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/segment"
)

// Result is the loop's output for one frame. It is valid only during
// Sink.Write: the loop reuses every buffer for later frames.
type Result struct {
	// Frame is the video frame with the overlay drawn on it.
	Frame *codec.Frame
	// Mask is the binary mask, 0 or 255, at the frame size.
	Mask *image.Gray
	// Probability is the lesion probability map the mask was thresholded from.
	Probability *segment.Map
	// Keyframe is true when the model ran on this frame; false when the mask
	// was propagated from an earlier frame by optical flow.
	Keyframe bool
	// Reason is why a keyframe was chosen (ReasonFirst, ...); empty on
	// propagated frames.
	Reason string
	Times  *Timestamps
}

// Sink receives the results of the loop in frame order.
type Sink interface {
	// Write consumes one result.
	Write(r *Result) error
	// Close finishes the output. With a non-nil cause the run failed and
	// the sink discards what it wrote, leaving earlier outputs as they were.
	Close(cause error) error
}
