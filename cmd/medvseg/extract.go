package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/spf13/cobra"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/trainer"
)

type extractOptions struct {
	out    string
	fps    float64
	resize string
}

func newExtractCommand() *cobra.Command {
	var o extractOptions

	cmd := &cobra.Command{
		Use:   "extract VIDEO --out DIR",
		Short: "Write the frames of a video as DIR/frames/0001.png, 0002.png, ...",
		Long: `extract decodes a video and writes every frame as a PNG named by its 1-based
display number. Rotation stored in the container is applied. The frames
folder appears only when every frame is written; an earlier DIR/frames is
replaced.`,
		Example: "  medvseg extract clip.mp4 --out run1 --fps 10 --resize 512x512",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runExtract(cmd.Context(), args[0], o)
		},
	}

	cmd.Flags().StringVarP(&o.out, "out", "o", "", "output folder; frames go to OUT/frames (required)")
	cmd.Flags().Float64Var(&o.fps, "fps", 0, "frame rate to sample at, in frames per second (default: the video's own)")
	cmd.Flags().StringVar(&o.resize, "resize", "", "frame size WxH in pixels, for example 512x512 (default: the video's own)")
	cmd.MarkFlagRequired("out")

	return cmd
}

func runExtract(ctx context.Context, video string, o extractOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()

	options, err := parseExtractOptions(o.fps, o.resize)
	if err != nil {
		return err
	}
	progress := newStageProgress()
	defer progress.finish()
	options.Progress = progress.update

	_, _, err = trainer.Extract(ctx, video, o.out, options)
	return err
}

// parseExtractOptions checks --fps and parses --resize.
func parseExtractOptions(fps float64, resize string) (trainer.ExtractOptions, error) {
	options := trainer.ExtractOptions{FPS: fps}
	if fps < 0 {
		return options, fmt.Errorf("invalid --fps %v: must be positive", fps)
	}
	if resize != "" {
		size, err := codec.ParseSize(resize)
		if err != nil {
			return options, fmt.Errorf("--resize: %w", err)
		}
		options.Size = size
	}
	return options, nil
}
