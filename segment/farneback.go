package segment

import (
	"errors"
	"fmt"

	"gocv.io/x/gocv"

	"github.com/medvseg/medvseg/codec"
)

// FarnebackParams are the parameters of cv::calcOpticalFlowFarneback.
type FarnebackParams struct {
	// PyrScale is the size ratio between pyramid levels, below 1.
	PyrScale float64
	// Levels is the number of pyramid levels, including the full image.
	Levels int
	// WinSize is the side of the averaging window in pixels.
	WinSize int
	// Iterations is the number of iterations on each pyramid level.
	Iterations int
	// PolyN is the side of the pixel neighbourhood for the polynomial expansion.
	PolyN int
	// PolySigma is the standard deviation of the Gaussian that weights that neighbourhood.
	PolySigma float64
	// Flags are OpenCV's OPTFLOW_* flags. OPTFLOW_USE_INITIAL_FLOW is
	// rejected because the estimator does not keep the previous flow.
	Flags int
}

// FarnebackResearchParams are the Farneback parameters of the research tool
// that medvseg replaces, kept so that propagation results stay comparable.
var FarnebackResearchParams = FarnebackParams{
	PyrScale:   0.5,
	Levels:     3,
	WinSize:    25,
	Iterations: 5,
	PolyN:      7,
	PolySigma:  1.5,
	Flags:      0,
}

// optflowUseInitialFlow is cv::OPTFLOW_USE_INITIAL_FLOW.
const optflowUseInitialFlow = 4

func (p FarnebackParams) validate() error {
	switch {
	case !(p.PyrScale > 0 && p.PyrScale < 1):
		return fmt.Errorf("invalid Farneback pyramid scale %v: must be in (0, 1)", p.PyrScale)
	case p.Levels < 1:
		return fmt.Errorf("invalid Farneback pyramid levels %d: must be at least 1", p.Levels)
	case p.WinSize < 1:
		return fmt.Errorf("invalid Farneback window size %d: must be at least 1", p.WinSize)
	case p.Iterations < 1:
		return fmt.Errorf("invalid Farneback iterations %d: must be at least 1", p.Iterations)
	case p.PolyN != 5 && p.PolyN != 7:
		return fmt.Errorf("invalid Farneback poly_n %d: OpenCV supports 5 or 7", p.PolyN)
	case !(p.PolySigma > 0):
		return fmt.Errorf("invalid Farneback poly_sigma %v: must be positive", p.PolySigma)
	case p.Flags&optflowUseInitialFlow != 0:
		return fmt.Errorf("invalid Farneback flags %d: OPTFLOW_USE_INITIAL_FLOW is not supported", p.Flags)
	}
	return nil
}

// FarnebackFlow computes dense optical flow with Gunnar Farneback's
// polynomial expansion method (cv::calcOpticalFlowFarneback). It is not safe
// for concurrent use.
type FarnebackFlow struct {
	params   FarnebackParams
	pipeline *flowPipeline
}

var _ FlowEstimator = (*FarnebackFlow)(nil)

// NewFarnebackFlow creates a Farneback estimator that runs at scale times
// the frame size (in (0, 1], 0 means 1).
func NewFarnebackFlow(p FarnebackParams, scale float64) (*FarnebackFlow, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	pipeline, err := newFlowPipeline(scale)
	if err != nil {
		return nil, err
	}
	return &FarnebackFlow{params: p, pipeline: pipeline}, nil
}

// Compute writes the flow from frame `from` to frame `to` into out. See
// FlowEstimator.
func (f *FarnebackFlow) Compute(from, to *codec.Frame, out *FlowField) error {
	if f.pipeline == nil {
		return errors.New("Farneback flow: estimator is closed")
	}
	return f.pipeline.run("Farneback", f, from, to, out)
}

func (f *FarnebackFlow) calc(from, to gocv.Mat, flow *gocv.Mat) error {
	p := f.params
	gocv.CalcOpticalFlowFarneback(from, to, flow, p.PyrScale, p.Levels, p.WinSize,
		p.Iterations, p.PolyN, p.PolySigma, p.Flags)
	return nil
}

// Close releases the buffers. Calling it again does nothing.
func (f *FarnebackFlow) Close() error {
	if f.pipeline == nil {
		return nil
	}
	f.pipeline.close()
	f.pipeline = nil
	return nil
}
