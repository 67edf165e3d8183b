package segment

import (
	"fmt"
	"image"
	"image/color"

	"gocv.io/x/gocv"

	"github.com/medvseg/medvseg/codec"
)

// DriftMeter measures how far mask propagation can be trusted between two
// frames, so a scheduler can run the model sooner when it cannot. It keeps
// its scratch Mats between calls and is not safe for concurrent use.
type DriftMeter struct {
	warper     Warper
	current    gocv.Mat // CV_8UC1 grey of the current frame
	previous   gocv.Mat // CV_8UC1 grey of the previous frame
	warped     gocv.Mat // previous, warped onto the current frame
	consistent image.Gray
}

// PhotometricError returns the mean absolute grey-level difference, on a
// 0-255 scale, between current and previous backward-warped onto it by flow,
// the flow from current to previous. A good flow on an unchanged scene gives
// a few grey levels; a scene cut or a failed flow gives tens.
func (d *DriftMeter) PhotometricError(current, previous *codec.Frame, flow *FlowField) (float64, error) {
	if err := checkFlow(flow); err != nil {
		return 0, fmt.Errorf("photometric error: %w", err)
	}
	for _, f := range []*codec.Frame{current, previous} {
		if f.Width != flow.Width() || f.Height != flow.Height() {
			return 0, fmt.Errorf("photometric error: frame %dx%d does not match flow %s", f.Width, f.Height, flow.size())
		}
	}

	if err := greyInto(current, &d.current); err != nil {
		return 0, fmt.Errorf("photometric error: %w", err)
	}
	if err := greyInto(previous, &d.previous); err != nil {
		return 0, fmt.Errorf("photometric error: %w", err)
	}

	d.warper.sampleCoords(flow)
	ensureMat(&d.warped, flow.Width(), flow.Height(), gocv.MatTypeCV8UC1)
	gocv.Remap(d.previous, &d.warped, &d.warper.coords, &d.warper.noMap, gocv.InterpolationLinear,
		gocv.BorderReplicate, color.RGBA{})
	gocv.AbsDiff(d.current, d.warped, &d.warped)

	return d.warped.Mean().Val1, nil
}

// Inconsistency returns the share of mask pixels (foreground > 127) whose
// flow fails the forward-backward check of Warper.Consistency at the given
// tolerance in pixels. forward is the flow from the mask's frame to the
// next, backward the flow back. An empty mask gives 0.
func (d *DriftMeter) Inconsistency(forward, backward *FlowField, mask *image.Gray, tolerance float64) (float64, error) {
	if err := d.warper.Consistency(forward, backward, tolerance, &d.consistent); err != nil {
		return 0, err
	}
	if mask.Rect.Dx() != forward.Width() || mask.Rect.Dy() != forward.Height() {
		return 0, fmt.Errorf("inconsistency: mask %dx%d does not match flow %s", mask.Rect.Dx(), mask.Rect.Dy(), forward.size())
	}

	inside, failed := 0, 0
	width := mask.Rect.Dx()
	for y := 0; y < mask.Rect.Dy(); y++ {
		row := mask.Pix[y*mask.Stride : y*mask.Stride+width]
		ok := d.consistent.Pix[y*width : (y+1)*width]
		for x, v := range row {
			if v <= 127 {
				continue
			}
			inside++
			if ok[x] == 0 {
				failed++
			}
		}
	}

	if inside == 0 {
		return 0, nil
	}
	return float64(failed) / float64(inside), nil
}

// Close releases the Mats. Calling it again does nothing.
func (d *DriftMeter) Close() error {
	for _, m := range []*gocv.Mat{&d.current, &d.previous, &d.warped} {
		closeMat(m)
	}
	return d.warper.Close()
}

func greyInto(f *codec.Frame, dst *gocv.Mat) error {
	view, err := frameView(f)
	if err != nil {
		return err
	}
	defer view.Close()

	ensureMat(dst, f.Width, f.Height, gocv.MatTypeCV8UC1)
	gocv.CvtColor(view, dst, gocv.ColorBGRToGray)
	return nil
}
