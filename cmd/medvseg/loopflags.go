package main

import (
	"fmt"

	"github.com/spf13/pflag"

	"github.com/medvseg/medvseg/segment"
	"github.com/medvseg/medvseg/stream"
)

// loopOptions are the flags that process and serve share: the model, the
// keyframe schedule, the optical flow and the overlay.
type loopOptions struct {
	model     string
	interval  int
	flow      string
	flowScale float64
	device    string
	threads   int
	threshold float64
	alpha     float64
}

func (o *loopOptions) addFlags(f *pflag.FlagSet, modelHelp string) {
	f.StringVar(&o.model, "model", "", modelHelp)
	f.IntVar(&o.interval, "keyframe-interval", 5, "run the model at least every N frames; 1 runs it on every frame")
	f.StringVar(&o.flow, "flow", segment.FlowDISUltrafast, fmt.Sprintf("optical flow method: one of %v", segment.FlowMethods))
	f.Float64Var(&o.flowScale, "flow-scale", 0.5, "resolution of the optical flow as a fraction of the frame size, in (0, 1]")
	f.StringVar(&o.device, "device", "auto", "where the model runs: auto (CUDA when available, else CPU), cpu or cuda")
	f.IntVar(&o.threads, "threads", 0, "ONNX Runtime threads per operator; 0 lets ONNX Runtime choose")
	f.Float64Var(&o.threshold, "threshold", 0, "probability above which a pixel is lesion, in (0, 1); 0 uses the model's own")
	f.Float64Var(&o.alpha, "alpha", segment.DefaultOverlayOptions.Opacity, "opacity of the overlay fill, in [0, 1]")
}

// validate rejects values outside the ranges the help gives, before any work starts.
func (o *loopOptions) validate() error {
	switch {
	case o.interval < 1 || o.interval > stream.MaxKeyframeInterval:
		return fmt.Errorf("invalid --keyframe-interval %d: use 1 (the model on every frame) to %d", o.interval,
			stream.MaxKeyframeInterval)
	case !(o.flowScale > 0 && o.flowScale <= 1):
		return fmt.Errorf("invalid --flow-scale %v: use a fraction in (0, 1], such as 0.5", o.flowScale)
	case !(o.alpha >= 0 && o.alpha <= 1):
		return fmt.Errorf("invalid --alpha %v: use an opacity in [0, 1]", o.alpha)
	case o.threshold != 0 && !(o.threshold > 0 && o.threshold < 1):
		return fmt.Errorf("invalid --threshold %v: use a probability in (0, 1), or 0 for the model's own", o.threshold)
	}
	return nil
}

// streamOptions returns the loop options the flags select.
func (o *loopOptions) streamOptions(threshold float64) stream.Options {
	options := stream.Options{
		KeyframeInterval: o.interval,
		Flow:             segment.FlowOptions{Method: o.flow, Scale: o.flowScale},
		Threshold:        threshold,
		Overlay:          segment.DefaultOverlayOptions,
	}
	options.Overlay.Opacity = o.alpha
	return options
}
