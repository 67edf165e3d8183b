package segment

import (
	"fmt"
	"image"
	"math"
	"strings"

	"gocv.io/x/gocv"

	"github.com/medvseg/medvseg/codec"
)

// Flow direction used throughout this package: a flow field from frame a to
// frame b, written f_{a->b}, is defined on a's pixel grid, and the vector at
// pixel x points to where that content sits in b, so a(x) ≈ b(x + f(x)).
// Backward warping an image of b by f_{a->b} samples b at x + f(x) and so
// gives an image aligned with a. To carry a mask from frame t to frame t+1,
// compute the flow from t+1 to t and warp the mask of t with it.

// FlowEstimator computes dense optical flow between two frames.
type FlowEstimator interface {
	// Compute writes the flow from frame `from` to frame `to` into out,
	// resizing out to the frame size. Both frames must have the same size.
	Compute(from, to *codec.Frame, out *FlowField) error
	// Close releases the native resources. Calling it again does nothing.
	Close() error
}

// Names of the flow methods that NewFlowEstimator accepts.
const (
	FlowDISUltrafast = "dis-ultrafast"
	FlowDISFast      = "dis-fast"
	FlowDISMedium    = "dis-medium"
	FlowFarneback    = "farneback"
)

// FlowMethods lists the accepted values of FlowOptions.Method.
var FlowMethods = []string{FlowDISUltrafast, FlowDISFast, FlowDISMedium, FlowFarneback}

// minFlowSide is the smallest width or height of the images that flow is
// computed on, so that DIS's 8-pixel patches and Farneback's pyramid (3
// levels at scale 0.5) work on images of several patches.
// NOTE: 32 is a chosen margin, not the smallest size either method accepts.
const minFlowSide = 32

// FlowOptions selects a flow method and the resolution it runs at.
type FlowOptions struct {
	// Method is one of FlowMethods.
	Method string
	// Scale is the flow resolution as a fraction of the frame size, in (0, 1].
	// Zero means 1 (full resolution).
	Scale float64
}

// NewFlowEstimator creates the estimator that o selects. Farneback uses
// FarnebackResearchParams.
func NewFlowEstimator(o FlowOptions) (FlowEstimator, error) {
	switch o.Method {
	case FlowDISUltrafast:
		return NewDISFlow(DISUltrafast, o.Scale)
	case FlowDISFast:
		return NewDISFlow(DISFast, o.Scale)
	case FlowDISMedium:
		return NewDISFlow(DISMedium, o.Scale)
	case FlowFarneback:
		return NewFarnebackFlow(FarnebackResearchParams, o.Scale)
	}
	return nil, fmt.Errorf("invalid flow method %q: expected one of %s",
		o.Method, strings.Join(FlowMethods, ", "))
}

// FlowField is a dense optical flow field: a CV_32FC2 Mat that stores the
// displacement (dx, dy) in pixels of every pixel. The zero value is an empty
// field ready for use. Estimators and warps resize it to the size they need
// and reuse its memory while the size stays the same. Close releases it.
type FlowField struct {
	mat gocv.Mat
}

// NewFlowField allocates a zero flow field of the given size.
func NewFlowField(width, height int) *FlowField {
	f := &FlowField{}
	f.Resize(width, height)
	f.mat.SetTo(gocv.Scalar{})
	return f
}

// Width returns the width of the field in pixels, 0 when it is empty.
func (f *FlowField) Width() int {
	if f.mat.Ptr() == nil {
		return 0
	}
	return f.mat.Cols()
}

// Height returns the height of the field in pixels, 0 when it is empty.
func (f *FlowField) Height() int {
	if f.mat.Ptr() == nil {
		return 0
	}
	return f.mat.Rows()
}

// Resize sets the field size. It keeps the memory, and so the vectors, when
// the size does not change. A new allocation has undefined contents.
func (f *FlowField) Resize(width, height int) {
	ensureMat(&f.mat, width, height, gocv.MatTypeCV32FC2)
}

// Fill sets every vector of the field to (dx, dy).
func (f *FlowField) Fill(dx, dy float32) {
	f.mat.SetTo(gocv.Scalar{Val1: float64(dx), Val2: float64(dy)})
}

// At returns the vector at pixel (x, y).
func (f *FlowField) At(x, y int) (dx, dy float32) {
	v := f.mat.GetVecfAt(y, x)
	return v[0], v[1]
}

// Vectors returns the vectors as one slice that shares the field's memory:
// dx and dy interleaved, row by row. The slice is valid until the next
// Resize to another size or Close.
func (f *FlowField) Vectors() []float32 {
	if f.mat.Ptr() == nil {
		return nil
	}
	v, err := f.mat.DataPtrFloat32()
	if err != nil {
		// Unreachable: the Mat is always a continuous CV_32FC2.
		panic(err)
	}
	return v
}

// Close releases the field's memory and leaves an empty field. Calling it
// again does nothing.
func (f *FlowField) Close() error {
	closeMat(&f.mat)
	return nil
}

func (f *FlowField) size() string {
	return fmt.Sprintf("%dx%d", f.Width(), f.Height())
}

// flowCalculator runs one flow algorithm on two grey images of the same size.
type flowCalculator interface {
	calc(from, to gocv.Mat, flow *gocv.Mat) error
}

// flowPipeline turns a pair of BGR frames into grey images at the flow
// resolution, runs a flowCalculator on them and brings the flow back to
// frame resolution, with the vectors scaled to frame pixels.
type flowPipeline struct {
	scale   float64
	small   [2]gocv.Mat // frames resized to the flow resolution, BGR
	grey    [2]gocv.Mat
	flow    gocv.Mat // flow at the flow resolution
	factors gocv.Mat // (frame width / flow width, frame height / flow height) per pixel
}

func newFlowPipeline(scale float64) (*flowPipeline, error) {
	if scale == 0 {
		scale = 1
	}
	if !(scale > 0 && scale <= 1) {
		return nil, fmt.Errorf("invalid flow scale %v: must be in (0, 1], for example 0.5 for half resolution", scale)
	}

	p := &flowPipeline{scale: scale}
	for i := range p.grey {
		p.small[i] = gocv.NewMat()
		p.grey[i] = gocv.NewMat()
	}
	p.flow = gocv.NewMat()
	return p, nil
}

// flowSize returns the size that flow is computed at for frames of w x h.
func (p *flowPipeline) flowSize(w, h int) (int, int) {
	if p.scale == 1 {
		return w, h
	}
	return max(1, int(math.Round(float64(w)*p.scale))), max(1, int(math.Round(float64(h)*p.scale)))
}

func (p *flowPipeline) run(name string, c flowCalculator, from, to *codec.Frame, out *FlowField) error {
	if err := checkFramePair(from, to); err != nil {
		return fmt.Errorf("%s flow: %w", name, err)
	}

	w, h := from.Width, from.Height
	fw, fh := p.flowSize(w, h)
	if fw < minFlowSide || fh < minFlowSide {
		return fmt.Errorf("%s flow: frame %dx%d at flow scale %v gives %dx%d, below the minimum %dx%d: raise the scale",
			name, w, h, p.scale, fw, fh, minFlowSide, minFlowSide)
	}

	for i, f := range []*codec.Frame{from, to} {
		if err := p.toGrey(i, f, fw, fh); err != nil {
			return fmt.Errorf("%s flow: %w", name, err)
		}
	}

	out.Resize(w, h)
	if fw == w && fh == h {
		if err := c.calc(p.grey[0], p.grey[1], &out.mat); err != nil {
			return fmt.Errorf("%s flow on %dx%d: %w", name, w, h, err)
		}
		return nil
	}

	if err := c.calc(p.grey[0], p.grey[1], &p.flow); err != nil {
		return fmt.Errorf("%s flow on %dx%d: %w", name, fw, fh, err)
	}
	gocv.Resize(p.flow, &out.mat, image.Pt(w, h), 0, 0, gocv.InterpolationLinear)

	// The two axes may be scaled by slightly different factors after rounding.
	if p.factors.Ptr() == nil || p.factors.Cols() != w || p.factors.Rows() != h {
		closeMat(&p.factors)
		factors := gocv.Scalar{Val1: float64(w) / float64(fw), Val2: float64(h) / float64(fh)}
		p.factors = gocv.NewMatWithSizeFromScalar(factors, h, w, gocv.MatTypeCV32FC2)
	}
	gocv.Multiply(out.mat, p.factors, &out.mat)
	return nil
}

// toGrey converts frame f to grey at the flow resolution fw x fh into p.grey[i].
func (p *flowPipeline) toGrey(i int, f *codec.Frame, fw, fh int) error {
	view, err := frameView(f)
	if err != nil {
		return err
	}
	defer view.Close()

	if fw == f.Width && fh == f.Height {
		gocv.CvtColor(view, &p.grey[i], gocv.ColorBGRToGray)
		return nil
	}
	gocv.Resize(view, &p.small[i], image.Pt(fw, fh), 0, 0, gocv.InterpolationArea)
	gocv.CvtColor(p.small[i], &p.grey[i], gocv.ColorBGRToGray)
	return nil
}

func (p *flowPipeline) close() {
	for i := range p.grey {
		closeMat(&p.small[i])
		closeMat(&p.grey[i])
	}
	closeMat(&p.flow)
	closeMat(&p.factors)
}

func checkFramePair(from, to *codec.Frame) error {
	if from.Width <= 0 || from.Height <= 0 {
		return fmt.Errorf("empty frame %dx%d", from.Width, from.Height)
	}
	if from.Width != to.Width || from.Height != to.Height {
		return fmt.Errorf("frame %dx%d does not match frame %dx%d",
			to.Width, to.Height, from.Width, from.Height)
	}
	return nil
}

// ensureMat makes m a Mat of the given size and type, reallocating only when
// it is empty or differs.
func ensureMat(m *gocv.Mat, width, height int, t gocv.MatType) {
	if m.Ptr() != nil && m.Cols() == width && m.Rows() == height && m.Type() == t {
		return
	}
	closeMat(m)
	*m = gocv.NewMatWithSize(height, width, t)
}

// closeMat closes m if it holds a Mat and leaves the zero Mat, so a second
// call does nothing.
func closeMat(m *gocv.Mat) {
	if m.Ptr() == nil {
		return
	}
	m.Close()
	*m = gocv.Mat{}
}
