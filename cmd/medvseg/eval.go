package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/rs/zerolog/log"
	"github.com/spf13/cobra"

	"github.com/medvseg/medvseg/trainer"
)

func newEvalCommand() *cobra.Command {
	var pred, gt, jsonPath string

	cmd := &cobra.Command{
		Use:   "eval --pred DIR --gt DIR",
		Short: "Score predicted masks against ground-truth masks",
		Long: `eval matches the masks of --pred and --gt by the frame number in their names
and prints Dice, IoU and the DAVIS boundary F-score (tolerance 0.008 of the
image diagonal) of every frame and their means. Masks are binarised at
> 127. Frames with only one of the two masks are left out and counted.`,
		Example: "  medvseg eval --pred run1/pseudo/masks --gt data/seq01/masks --json run1/eval.json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := trainer.Evaluate(pred, gt)
			if err != nil {
				return err
			}
			if jsonPath != "" {
				if err := e.WriteJSON(jsonPath); err != nil {
					return err
				}
			}
			printEvaluation(cmd.OutOrStdout(), e)
			log.Info().Str("stage", "eval").Int("frames", len(e.Frames)).Float64("mean_iou", e.Mean.IoU).
				Float64("mean_dice", e.Mean.Dice).Float64("mean_boundary_f", e.Mean.BoundaryF).Msg("evaluated")
			return nil
		},
	}

	f := cmd.Flags()
	f.StringVar(&pred, "pred", "", "folder of predicted masks (PNG, named by frame number) (required)")
	f.StringVar(&gt, "gt", "", "folder of ground-truth masks (PNG, named by frame number) (required)")
	f.StringVar(&jsonPath, "json", "", "also write the scores to this JSON file")
	cmd.MarkFlagRequired("pred")
	cmd.MarkFlagRequired("gt")

	return cmd
}

func printEvaluation(w io.Writer, e *trainer.Evaluation) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "frame\tDice\tIoU\tboundary F\t")
	for _, f := range e.Frames {
		fmt.Fprintf(tw, "%s\t%.4f\t%.4f\t%.4f\t\n", f.Frame, f.Dice, f.IoU, f.BoundaryF)
	}
	fmt.Fprintf(tw, "mean of %d\t%.4f\t%.4f\t%.4f\t\n", len(e.Frames), e.Mean.Dice, e.Mean.IoU, e.Mean.BoundaryF)
	tw.Flush()
	if len(e.MissingPred) > 0 || e.UnmatchedPred > 0 {
		fmt.Fprintf(w, "left out: %d ground-truth frames without a prediction, %d predictions without ground truth\n",
			len(e.MissingPred), e.UnmatchedPred)
	}
}
