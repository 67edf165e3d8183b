package segment

import (
	"fmt"
	"image"

	"gocv.io/x/gocv"

	"github.com/medvseg/medvseg/codec"
)

// preprocessor turns BGR frames into the network's NCHW float32 RGB input.
type preprocessor struct {
	width, height int
	// lut maps a byte of channel c (RGB order) to (v/255 - mean[c]) / std[c].
	lut     [3][256]float32
	resized gocv.Mat // CV_8UC3 at the input size, reused across frames
}

func newPreprocessor(size codec.Size, mean, std [3]float32) *preprocessor {
	p := &preprocessor{
		width:   size.Width,
		height:  size.Height,
		resized: gocv.NewMatWithSize(size.Height, size.Width, gocv.MatTypeCV8UC3),
	}
	for c := 0; c < 3; c++ {
		for v := 0; v < 256; v++ {
			p.lut[c][v] = (float32(v)/255 - mean[c]) / std[c]
		}
	}
	return p
}

// run writes frame f into dst, one image of 3 x height x width values:
// resize to the input size, BGR to RGB, scale to [0,1], normalise. The
// resize is OpenCV's INTER_AREA, pixel-area averaging that does not alias
// when shrinking, the same as the trainer uses, so the network sees at run
// time what it saw in training.
func (p *preprocessor) run(f *codec.Frame, dst []float32) error {
	view, err := frameView(f)
	if err != nil {
		return err
	}
	defer view.Close()

	src := view
	if f.Width != p.width || f.Height != p.height {
		gocv.Resize(view, &p.resized, image.Pt(p.width, p.height), 0, 0, gocv.InterpolationArea)
		src = p.resized
	}

	pix, err := src.DataPtrUint8()
	if err != nil {
		return fmt.Errorf("read resized %s: %w", f, err)
	}

	plane := p.width * p.height
	red, green, blue := dst[:plane], dst[plane:2*plane], dst[2*plane:3*plane]
	for i := 0; i < plane; i++ {
		blue[i] = p.lut[2][pix[3*i]]
		green[i] = p.lut[1][pix[3*i+1]]
		red[i] = p.lut[0][pix[3*i+2]]
	}
	return nil
}

func (p *preprocessor) close() {
	p.resized.Close()
}
