package segment

import (
	"fmt"
	"image"
	"image/color"

	"gocv.io/x/gocv"

	"github.com/medvseg/medvseg/codec"
)

// OverlayOptions sets how Overlay draws a mask.
type OverlayOptions struct {
	// Colour is the colour of the fill and of the contour. Its alpha is ignored.
	Colour color.RGBA
	// Opacity of the fill, in [0, 1]; 0 draws the contour alone.
	Opacity float64
	// LineWidth is the contour thickness in pixels; 0 draws no contour.
	LineWidth int
}

// DefaultOverlayOptions draws a green fill at 40% opacity with a 2-pixel contour.
var DefaultOverlayOptions = OverlayOptions{
	Colour:    color.RGBA{G: 255, A: 255},
	Opacity:   0.4,
	LineWidth: 2,
}

// Overlay draws masks on frames. It keeps its Mats between calls, so frames
// of one size allocate no pixel buffers after the first, only the Mat
// headers that wrap the frame and the mask and the contour vector. An
// Overlay is not safe for concurrent use.
type Overlay struct {
	options OverlayOptions
	colour  gocv.Mat // CV_8UC3, the frame size filled with the colour
	blended gocv.Mat // CV_8UC3, the frame blended with the colour
	binary  gocv.Mat // CV_8UC1, the mask at 0 or 255
}

// NewOverlay checks o and returns an Overlay that draws with it.
func NewOverlay(o OverlayOptions) (*Overlay, error) {
	if !(o.Opacity >= 0 && o.Opacity <= 1) {
		return nil, fmt.Errorf("invalid overlay opacity %v: must be in [0, 1]", o.Opacity)
	}
	if o.LineWidth < 0 {
		return nil, fmt.Errorf("invalid overlay line width %d: must be 0 (no contour) or more", o.LineWidth)
	}
	return &Overlay{
		options: o,
		colour:  gocv.NewMat(),
		blended: gocv.NewMat(),
		binary:  gocv.NewMat(),
	}, nil
}

// Draw paints mask (foreground > 127) onto frame in place: the foreground
// is blended with the colour at the set opacity, and a contour of the set
// width is drawn centred on the mask's outer and hole boundaries, so it
// reaches about LineWidth/2 pixels outside the mask. Pixels farther from
// the mask are left unchanged. The mask must have the frame's size.
func (o *Overlay) Draw(frame *codec.Frame, mask *image.Gray) error {
	if o.binary.Ptr() == nil {
		return fmt.Errorf("draw overlay: overlay is closed")
	}
	width, height := mask.Rect.Dx(), mask.Rect.Dy()
	if width != frame.Width || height != frame.Height {
		return fmt.Errorf("draw overlay: mask %dx%d does not match frame %dx%d",
			width, height, frame.Width, frame.Height)
	}

	frameMat, err := frameView(frame)
	if err != nil {
		return fmt.Errorf("draw overlay: %w", err)
	}
	defer frameMat.Close()

	maskMat, err := grayView(mask)
	if err != nil {
		return fmt.Errorf("draw overlay: %w", err)
	}
	defer maskMat.Close()

	gocv.Threshold(maskMat, &o.binary, 127, 255, gocv.ThresholdBinary)
	if o.options.Opacity > 0 {
		o.fill(&frameMat, width, height)
	}
	if o.options.LineWidth > 0 {
		contours := gocv.FindContours(o.binary, gocv.RetrievalList, gocv.ChainApproxSimple)
		gocv.DrawContours(&frameMat, contours, -1, o.options.Colour, o.options.LineWidth)
		contours.Close()
	}
	return nil
}

// fill blends the foreground of o.binary in frameMat with the colour.
func (o *Overlay) fill(frameMat *gocv.Mat, width, height int) {
	if o.colour.Cols() != width || o.colour.Rows() != height {
		c := o.options.Colour
		o.colour.Close()
		o.colour = gocv.NewMatWithSizeFromScalar(
			gocv.Scalar{Val1: float64(c.B), Val2: float64(c.G), Val3: float64(c.R)},
			height, width, gocv.MatTypeCV8UC3)
	}

	alpha := o.options.Opacity
	gocv.AddWeighted(*frameMat, 1-alpha, o.colour, alpha, 0, &o.blended)
	o.blended.CopyToWithMask(frameMat, o.binary)
}

// Close releases the Mats. Calling it again does nothing.
func (o *Overlay) Close() error {
	closeMat(&o.colour)
	closeMat(&o.blended)
	closeMat(&o.binary)
	return nil
}
