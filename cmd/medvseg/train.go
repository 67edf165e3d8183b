package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"

	"github.com/rs/zerolog/log"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/medvseg/medvseg/trainer"
	"github.com/medvseg/medvseg/trainer/unet"
)

func newTrainCommand() *cobra.Command {
	o := trainer.DefaultTrainOptions
	channels := joinInts(unet.DefaultChannels)

	cmd := &cobra.Command{
		Use:   "train --data DIR --out RUN",
		Short: "Train the U-Net student on frames and masks",
		Long: `train fits the U-Net student to DIR/frames/NAME.png and DIR/masks/NAME.png
(masks 0/255, same name and size as their frame), or to every ROOT/<clip>
with frames and masks folders. Frames are resized to --input-size squared.
Training batches are augmented with flips, rotation, scale, shift,
brightness, contrast, hue, saturation and blur. The last --val-fraction of
each clip's frames (in name order) is held out for validation.

An epoch is one pass over the training frames, but at least
--min-steps-per-epoch steps of --batch-size frames: a training set too
small for that is repeated within the epoch, so a short clip still gets
enough optimizer steps.

Outputs in RUN: checkpoints/last after every epoch, checkpoints/best (the
highest validation Dice) and train_history.json. The same --random-seed and
data give the same losses.`,
		Example: "  medvseg train --data run1/filtered --out run1 --epochs 30\n" +
			"  medvseg train --data run1/filtered --out run1 --epochs 40 --resume",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			parsed, err := parseInts(channels)
			if err != nil {
				return fmt.Errorf("invalid --channels %q: %w", channels, err)
			}
			o.Channels = parsed
			return runTrain(cmd.Context(), o)
		},
	}

	flags := cmd.Flags()
	flags.StringVar(&o.Data, "data", "", "training data: DIR with frames/ and masks/, or ROOT with <clip>/frames and <clip>/masks (required)")
	flags.StringVarP(&o.Out, "out", "o", "", "run folder for checkpoints/ and train_history.json (required)")
	flags.IntVar(&o.BatchSize, "batch-size", o.BatchSize, "frames per training step")
	flags.IntVar(&o.Epochs, "epochs", o.Epochs, "total epochs, counting those before a --resume")
	flags.IntVar(&o.MinStepsPerEpoch, "min-steps-per-epoch", o.MinStepsPerEpoch, minStepsUsage)
	flags.IntVar(&o.InputSize, "input-size", o.InputSize, "side of the square network input in pixels; a multiple of 8 with 4 levels")
	flags.StringVar(&channels, "channels", channels, "encoder channels per level, comma-separated")
	flags.Float64Var(&o.LearningRate, "lr", o.LearningRate, "peak AdamW learning rate; decays along a cosine to 1% at the last epoch")
	flags.Float64Var(&o.WeightDecay, "weight-decay", o.WeightDecay, "AdamW weight decay")
	flags.IntVar(&o.Threads, "threads", o.Threads, "libtorch CPU threads (the default is this machine's CPU count)")
	flags.Float64Var(&o.ValFraction, "val-fraction", o.ValFraction,
		"fraction of each clip's frames, from its end, held out for validation; 0 picks the best checkpoint by training Dice")
	flags.Float32Var(&o.Loss.BCE, "bce-weight", o.Loss.BCE, "weight of the binary cross-entropy term")
	flags.Float32Var(&o.Loss.Dice, "dice-weight", o.Loss.Dice, "weight of the soft Dice term")
	flags.Float32Var(&o.Loss.Boundary, "boundary-weight", o.Loss.Boundary,
		"weight of the boundary term: cross-entropy within 2 pixels of the mask boundary")
	flags.Uint64Var(&o.RandomSeed, "random-seed", o.RandomSeed, "seed of weight initialisation, shuffling and augmentation")
	flags.BoolVar(&o.Resume, "resume", false, "continue the run in --out from checkpoints/last")
	cmd.MarkFlagRequired("data")
	cmd.MarkFlagRequired("out")

	return cmd
}

// minStepsUsage is the help text of --min-steps-per-epoch in train and
// train-offline.
const minStepsUsage = "minimum training steps per epoch: training frames too few for that many batches " +
	"are repeated, each time in a new order and with new augmentation; 0 makes an epoch one pass"

func runTrain(ctx context.Context, o trainer.TrainOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()

	var bar *progressbar.ProgressBar
	if isTerminal() {
		o.Progress = func(p trainer.TrainProgress) {
			if p.Step == 1 {
				bar = newStepProgress(p.Steps, fmt.Sprintf("epoch %d/%d", p.Epoch, p.Epochs))
			}
			bar.Describe(fmt.Sprintf("epoch %d/%d loss %.3f dice %.3f", p.Epoch, p.Epochs, p.Loss, p.Dice))
			bar.Add(1)
			if p.Step == p.Steps {
				bar.Finish()
			}
		}
	}

	history, err := trainer.Train(ctx, o)
	if err != nil {
		return err
	}

	log.Info().Str("out", o.Out).Int("best_epoch", history.BestEpoch).Float64("best_dice", history.BestDice).
		Msg("training finished")
	return nil
}

// newStepProgress returns a progress bar over the training steps of one epoch.
func newStepProgress(steps int, description string) *progressbar.ProgressBar {
	return progressbar.NewOptions(steps,
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionSetDescription(description),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("steps"),
		progressbar.OptionThrottle(100_000_000),
		progressbar.OptionClearOnFinish(),
	)
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, field := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil {
			return nil, fmt.Errorf("expected comma-separated integers, for example 16,32,64,128")
		}
		out = append(out, n)
	}
	return out, nil
}

func joinInts(values []int) string {
	fields := make([]string, len(values))
	for i, v := range values {
		fields[i] = strconv.Itoa(v)
	}
	return strings.Join(fields, ",")
}
