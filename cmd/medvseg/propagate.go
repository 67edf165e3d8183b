package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/medvseg/medvseg/segment"
	"github.com/medvseg/medvseg/trainer"
)

type propagateOptions struct {
	data       string
	run        string
	out        string
	seeds      string
	seedFrames string
	trainer.PropagateOptions
}

func newPropagateCommand() *cobra.Command {
	o := propagateOptions{PropagateOptions: trainer.DefaultPropagateOptions}

	cmd := &cobra.Command{
		Use:   "propagate (--data CLIP --out RUN | --run RUN)",
		Short: "Propagate seed masks through a clip with optical flow into pseudo-labels",
		Long: `propagate carries every seed mask forward to the next seed and backward to
the previous one (or to the clip's ends) with dense optical flow between
adjacent frames. Each frame fuses the probability maps of its nearest seed
on each side, weighted per pixel by the inverse distance in frames times the
forward-backward flow consistency along the way, and thresholds the result.

Frames are the PNGs of CLIP/frames (or RUN/frames) in name order. A seed
mask matches the frame with the same number in its name, so 7.png,
0007.png and frame_0007.png all mean frame 7. Seeds come from --seeds, else
RUN/seeds with --run, else CLIP/masks, restricted to --seed-frames when
given. Non-binary seeds are binarised at > 127 with a warning.

Outputs, each replaced only when the whole run succeeds:
  OUT/pseudo/masks/NAME.png      pseudo-labels, 0/255, named like the frames
  OUT/pseudo/propagation.json    per frame: seeds used, weights, consistency
  OUT/flows/*.flo, flows.json    with --keep-flows: Middlebury flows at the
                                 flow resolution, reused by later runs`,
		Example: "  medvseg propagate --data data/seq01 --seed-frames 1,12,25 --out run1\n" +
			"  medvseg propagate --run run1 --flow farneback --keep-flows",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPropagate(cmd.Context(), o)
		},
	}

	f := cmd.Flags()
	f.StringVar(&o.data, "data", "", "clip folder with frames/ and masks/ (the seeds are taken from masks/ unless --seeds)")
	f.StringVar(&o.run, "run", "", "run folder with frames/ and seeds/; also the default --out")
	f.StringVarP(&o.out, "out", "o", "", "run folder for pseudo/ and flows/ (required with --data)")
	f.StringVar(&o.seeds, "seeds", "", "folder of seed masks (PNG, named by frame number)")
	f.StringVar(&o.seedFrames, "seed-frames", "", "comma-separated frame numbers to take seeds for, for example 1,12,25 (default: every mask of the seed folder)")
	f.StringVar(&o.Flow.Method, "flow", o.Flow.Method, fmt.Sprintf("optical flow method: one of %s", strings.Join(segment.FlowMethods, ", ")))
	f.Float64Var(&o.Flow.Scale, "flow-scale", o.Flow.Scale, "resolution of flow and propagation as a fraction of the frame size, in (0, 1]")
	f.Float64Var(&o.ConsistencyThreshold, "consistency-th", o.ConsistencyThreshold,
		"largest forward-backward flow error, in pixels at the flow resolution, of a consistent pixel")
	f.Float64Var(&o.Threshold, "threshold", o.Threshold, "probability above which a pixel of the fused map is lesion, in (0, 1)")
	f.BoolVar(&o.ResizeSeeds, "resize", false, "resize seed masks of another size than their frame, with nearest-neighbour interpolation")
	f.BoolVar(&o.KeepFlows, "keep-flows", false, "keep the optical flows in OUT/flows for later runs")

	return cmd
}

func runPropagate(ctx context.Context, o propagateOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()

	framesDir, src, out, err := propagateInputs(o)
	if err != nil {
		return err
	}
	progress := newStageProgress()
	defer progress.finish()
	o.Progress = progress.update

	_, err = trainer.Propagate(ctx, framesDir, src, out, o.PropagateOptions)
	return err
}

// propagateInputs resolves the frames folder, the seeds and the output
// folder from the flags.
func propagateInputs(o propagateOptions) (string, trainer.SeedSource, string, error) {
	var src trainer.SeedSource
	if (o.data == "") == (o.run == "") {
		return "", src, "", errors.New("give exactly one of --data (a clip folder with frames/ and masks/) or --run (a run folder with frames/ and seeds/)")
	}

	numbers, err := parseFrameNumbers(o.seedFrames)
	if err != nil {
		return "", src, "", err
	}
	src.Numbers = numbers

	var framesDir, out string
	if o.data != "" {
		if o.out == "" {
			return "", src, "", errors.New("--out is required with --data: name the run folder to write pseudo/ into")
		}
		var masks string
		if framesDir, masks, err = trainer.ClipFolders(o.data); err != nil {
			return "", src, "", err
		}
		src.Dir, out = masks, o.out
	} else {
		var seeds string
		if framesDir, seeds, err = trainer.RunFolders(o.run); err != nil {
			return "", src, "", err
		}
		src.Dir, out = seeds, o.run
		if o.out != "" {
			out = o.out
		}
	}
	if o.seeds != "" {
		src.Dir = o.seeds
	}
	return framesDir, src, out, nil
}

// parseFrameNumbers parses "1,12,25" into frame numbers; "" gives none.
func parseFrameNumbers(s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var numbers []int
	for _, part := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("invalid --seed-frames %q: %q is not a frame number; give numbers like 1,12,25", s, part)
		}
		numbers = append(numbers, n)
	}
	return numbers, nil
}

// stageProgress draws one progress bar per stage of a trainer call on a
// terminal, and nothing otherwise; the trainer logs one line per stage.
type stageProgress struct {
	stage string
	bar   *progressbar.ProgressBar
}

func newStageProgress() *stageProgress { return &stageProgress{} }

func (p *stageProgress) update(stage string, done, total int) {
	if stage != p.stage || p.bar == nil {
		p.finish()
		p.stage = stage
		p.bar = newProgress(total, stage)
	}
	p.bar.Set(done)
}

func (p *stageProgress) finish() {
	if p.bar != nil {
		p.bar.Finish()
		p.bar = nil
	}
}
