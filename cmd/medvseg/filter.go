package main

import (
	"context"
	"os"
	"os/signal"

	"github.com/spf13/cobra"

	"github.com/medvseg/medvseg/trainer"
)

func newFilterCommand() *cobra.Command {
	o := trainer.DefaultFilterOptions
	var out string

	cmd := &cobra.Command{
		Use:   "filter --out RUN",
		Short: "Keep the pseudo-labels that stay consistent in time",
		Long: `filter reads the pseudo-labels that medvseg propagate wrote to RUN and keeps
a propagated frame t when:
  - its warp IoU reaches --iou-th: the pseudo-label of a neighbour (t-1 or
    t+1) is warped onto frame t with the optical flow and compared with
    the pseudo-label of t by IoU; the better of the two neighbours counts;
  - its area differs from the closer neighbour area by at most
    --max-area-change, measured as |a-b| / max(a, b);
  - its area is at least --min-area pixels.
Components smaller than --min-component pixels are removed first. Seed
frames are always kept, with their seed unchanged.

Outputs, each replaced only when the whole run succeeds:
  RUN/filtered/frames/NAME.png   kept frames (hard links, else copies)
  RUN/filtered/masks/NAME.png    their pseudo-labels
  RUN/filtered/filter.json       per frame: warp IoU, area change, area, why dropped
  RUN/pseudo/dropped/NAME.png    the dropped pseudo-labels`,
		Example: "  medvseg filter --out run1 --iou-th 0.5",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
			defer stop()

			progress := newStageProgress()
			defer progress.finish()
			o.Progress = progress.update
			_, err := trainer.Filter(ctx, out, o)
			return err
		},
	}

	f := cmd.Flags()
	f.StringVarP(&out, "out", "o", "", "run folder that medvseg propagate wrote pseudo/ into (required)")
	f.Float64Var(&o.IoUThreshold, "iou-th", o.IoUThreshold, "lowest warp IoU of a kept pseudo-label, in [0, 1]")
	f.Float64Var(&o.MaxAreaChange, "max-area-change", o.MaxAreaChange,
		"largest area change |a-b| / max(a, b) to the closer neighbour, in [0, 1]")
	f.IntVar(&o.MinArea, "min-area", o.MinArea, "smallest kept pseudo-label, in pixels")
	f.IntVar(&o.MinComponent, "min-component", o.MinComponent, "remove connected components below this many pixels; 0 keeps all")
	cmd.MarkFlagRequired("out")

	return cmd
}
