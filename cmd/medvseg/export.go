package main

import (
	"errors"
	"path/filepath"

	"github.com/rs/zerolog/log"
	"github.com/spf13/cobra"

	"github.com/medvseg/medvseg/trainer"
)

func newExportCommand() *cobra.Command {
	var o trainer.ExportOptions
	var run string

	cmd := &cobra.Command{
		Use:   "export (--run RUN | --checkpoint FILE -o model.onnx)",
		Short: "Write a trained U-Net checkpoint as an ONNX model",
		Long: `export rebuilds the trained U-Net with medvseg's ONNX writer, parameter by
parameter, folds each batch normalisation into the convolution before it,
and stores the input size, normalisation, threshold and provenance in the
model's metadata, so process and serve run it without further options.

With --run RUN it reads RUN/checkpoints/best and writes RUN/model.onnx.`,
		Example: "  medvseg export --run run1\n  medvseg export --checkpoint run1/checkpoints/last -o last.onnx",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if run != "" {
				if o.Checkpoint == "" {
					o.Checkpoint = filepath.Join(run, "checkpoints", "best")
				}
				if o.Out == "" {
					o.Out = filepath.Join(run, "model.onnx")
				}
			}
			if o.Checkpoint == "" || o.Out == "" {
				return errors.New("give --run RUN, or both --checkpoint FILE and --out FILE")
			}

			o.Provenance = map[string]any{"version": buildVersion()}
			if err := trainer.Export(o); err != nil {
				return err
			}
			log.Info().Str("checkpoint", o.Checkpoint).Str("model", o.Out).Msg("exported")
			return nil
		},
	}

	f := cmd.Flags()
	f.StringVar(&run, "run", "", "run folder of medvseg train: reads checkpoints/best, writes model.onnx")
	f.StringVar(&o.Checkpoint, "checkpoint", "", "checkpoint to export (default with --run: RUN/checkpoints/best)")
	f.StringVarP(&o.Out, "out", "o", "", "ONNX file to write (default with --run: RUN/model.onnx)")
	f.Float64Var(&o.Threshold, "threshold", 0.5, "probability above which a pixel is lesion, stored in the model, in (0, 1)")
	return cmd
}
