package segment

import (
	"fmt"
	"image"
	"math"
	"unsafe"

	"gocv.io/x/gocv"
)

// PostprocessOptions sets the clean-up of binary masks, applied in this
// order at frame resolution. Zero values turn each step off.
type PostprocessOptions struct {
	// OpeningRadius is the radius in pixels of the elliptical element of a
	// morphological opening, which removes specks and thin protrusions.
	OpeningRadius int
	// ClosingRadius is the radius in pixels of the elliptical element of a
	// morphological closing, which fills small holes and gaps.
	ClosingRadius int
	// MinComponentArea removes 8-connected foreground components with fewer
	// pixels than this.
	MinComponentArea int
}

func (o PostprocessOptions) validate() error {
	if o.OpeningRadius < 0 || o.ClosingRadius < 0 || o.MinComponentArea < 0 {
		return fmt.Errorf("invalid mask post-processing %+v: radii and area must be zero (off) or positive", o)
	}
	return nil
}

// postprocessor turns logits at the network's resolution into a probability
// map and a binary mask at frame resolution. Its buffers are reused across
// frames.
type postprocessor struct {
	width, height int
	threshold     float32
	options       PostprocessOptions

	probability []float32 // sigmoid of the logits, at the network's resolution
	probView    gocv.Mat  // view of probability
	frameProb   *Map      // frame-size probabilities when the caller wants only a mask

	opening, closing        gocv.Mat // structuring elements, empty when off
	morphed                 gocv.Mat
	labels, stats, centroid gocv.Mat
	small                   []bool
}

func newPostprocessor(width, height int, threshold float32, o PostprocessOptions) (*postprocessor, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}

	p := &postprocessor{
		width: width, height: height, threshold: threshold, options: o,
		probability: make([]float32, width*height),
		frameProb:   NewMap(0, 0),
		opening:     structuringElement(o.OpeningRadius),
		closing:     structuringElement(o.ClosingRadius),
		morphed:     gocv.NewMat(),
		labels:      gocv.NewMat(),
		stats:       gocv.NewMat(),
		centroid:    gocv.NewMat(),
	}

	view, err := gocv.NewMatFromBytes(height, width, gocv.MatTypeCV32FC1, float32Bytes(p.probability))
	if err != nil {
		p.close()
		return nil, fmt.Errorf("create probability view %dx%d: %w", width, height, err)
	}
	p.probView = view
	return p, nil
}

func structuringElement(radius int) gocv.Mat {
	if radius == 0 {
		return gocv.NewMat()
	}
	return gocv.GetStructuringElement(gocv.MorphEllipse, image.Pt(2*radius+1, 2*radius+1))
}

// run post-processes the logits of one image for a frame of frameWidth x
// frameHeight. prob and mask are resized to the frame and filled; either
// may be nil.
func (p *postprocessor) run(logits []float32, frameWidth, frameHeight int, prob *Map, mask *image.Gray) error {
	for i, v := range logits {
		p.probability[i] = float32(1 / (1 + math.Exp(-float64(v))))
	}

	if prob == nil {
		if mask == nil {
			return nil
		}
		prob = p.frameProb
	}

	prob.Resize(frameWidth, frameHeight)
	dst, err := prob.matView()
	if err != nil {
		return err
	}
	// Resize writes into the map's memory because dst already has the
	// requested size and type, so OpenCV does not reallocate it.
	gocv.Resize(p.probView, &dst, image.Pt(frameWidth, frameHeight), 0, 0, gocv.InterpolationLinear)
	dst.Close()

	if mask == nil {
		return nil
	}
	fitGray(mask, frameWidth, frameHeight)
	for i, v := range prob.Pix {
		if v > p.threshold {
			mask.Pix[i] = 255
		} else {
			mask.Pix[i] = 0
		}
	}
	return p.clean(mask)
}

// clean applies the opening, the closing and the small-component removal.
func (p *postprocessor) clean(mask *image.Gray) error {
	o := p.options
	if o.OpeningRadius == 0 && o.ClosingRadius == 0 && o.MinComponentArea == 0 {
		return nil
	}

	view, err := grayView(mask)
	if err != nil {
		return err
	}
	defer view.Close()

	if o.OpeningRadius > 0 {
		gocv.MorphologyEx(view, &p.morphed, gocv.MorphOpen, p.opening)
		p.morphed.CopyTo(&view)
	}
	if o.ClosingRadius > 0 {
		gocv.MorphologyEx(view, &p.morphed, gocv.MorphClose, p.closing)
		p.morphed.CopyTo(&view)
	}
	if o.MinComponentArea > 0 {
		return p.removeSmallComponents(view, mask)
	}
	return nil
}

func (p *postprocessor) removeSmallComponents(view gocv.Mat, mask *image.Gray) error {
	n := gocv.ConnectedComponentsWithStats(view, &p.labels, &p.stats, &p.centroid)

	if cap(p.small) < n {
		p.small = make([]bool, n)
	}
	p.small = p.small[:n]
	any := false
	for label := 1; label < n; label++ {
		p.small[label] = int(p.stats.GetIntAt(label, int(gocv.CC_STAT_AREA))) < p.options.MinComponentArea
		any = any || p.small[label]
	}
	if !any {
		return nil
	}

	raw, err := p.labels.DataPtrUint8()
	if err != nil {
		return fmt.Errorf("read component labels: %w", err)
	}
	// The labels are CV_32S, four bytes a pixel in native byte order.
	labels := unsafe.Slice((*int32)(unsafe.Pointer(&raw[0])), len(raw)/4)
	for i, label := range labels {
		if label > 0 && p.small[label] {
			mask.Pix[i] = 0
		}
	}
	return nil
}

func (p *postprocessor) close() {
	for _, m := range []*gocv.Mat{&p.probView, &p.opening, &p.closing, &p.morphed,
		&p.labels, &p.stats, &p.centroid} {
		m.Close()
	}
}

// fitGray makes img a packed width x height image at the origin, reusing
// its buffer when it is large enough.
func fitGray(img *image.Gray, width, height int) {
	if img.Rect == image.Rect(0, 0, width, height) && img.Stride == width && len(img.Pix) == width*height {
		return
	}
	if cap(img.Pix) < width*height {
		img.Pix = make([]uint8, width*height)
	}
	img.Pix = img.Pix[:width*height]
	img.Stride = width
	img.Rect = image.Rect(0, 0, width, height)
}
