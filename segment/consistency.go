package segment

import (
	"errors"
	"fmt"
	"image"
	"math"

	"gocv.io/x/gocv"
)

// Consistency writes the forward-backward consistency mask of a pair of
// flows into dst, resizing dst to the flow size. forward is the flow from
// frame a to frame b and backward the flow from b to a, both on their own
// frame's grid. Pixel x of frame a is consistent (255) when
// |forward(x) + backward(x + forward(x))| < threshold, in pixels, and when
// x + forward(x) lies inside frame b. Every other pixel is 0: it is occluded
// in b, leaves the view, or has a flow that the two directions disagree on.
func (w *Warper) Consistency(forward, backward *FlowField, threshold float64, dst *image.Gray) error {
	if err := checkFlowPair(forward, backward); err != nil {
		return fmt.Errorf("flow consistency: %w", err)
	}
	if !(threshold > 0) || math.IsInf(threshold, 0) {
		return fmt.Errorf("flow consistency: invalid threshold %v: must be a positive number of pixels", threshold)
	}
	if dst == nil {
		return errors.New("flow consistency: dst is nil")
	}

	width, height := forward.Width(), forward.Height()
	resizeGray(dst, width, height)
	dstView, err := grayView(dst)
	if err != nil {
		return fmt.Errorf("flow consistency: %w", err)
	}
	defer dstView.Close()

	w.sampleCoords(forward)
	w.warpFlow(backward)
	ensureMat(&w.sum, width, height, gocv.MatTypeCV32FC2)
	gocv.Add(forward.mat, w.warped, &w.sum)

	for i := range w.channel {
		ensureMat(&w.channel[i], width, height, gocv.MatTypeCV32F)
		gocv.ExtractChannel(w.sum, &w.channel[i], i)
	}
	ensureMat(&w.length, width, height, gocv.MatTypeCV32F)
	gocv.Magnitude(w.channel[0], w.channel[1], &w.length)

	// THRESH_BINARY_INV maps length > threshold to 0 and the rest to 255.
	// Lowering the threshold by one float32 step makes a length equal to it fail.
	cut := math.Nextafter32(float32(threshold), 0)
	gocv.Threshold(w.length, &w.length, cut, 255, gocv.ThresholdBinaryInv)
	w.length.ConvertTo(&dstView, gocv.MatTypeCV8U)

	ensureMat(&w.inside, width, height, gocv.MatTypeCV8U)
	gocv.InRangeWithScalar(w.coords, gocv.Scalar{}, gocv.Scalar{Val1: float64(width - 1), Val2: float64(height - 1)}, &w.inside)
	gocv.BitwiseAnd(dstView, w.inside, &dstView)
	return nil
}
