package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/rs/zerolog/log"
	"github.com/spf13/cobra"

	"github.com/medvseg/medvseg/codec"
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
			return runExtract(args[0], o)
		},
	}

	cmd.Flags().StringVarP(&o.out, "out", "o", "", "output folder; frames go to OUT/frames (required)")
	cmd.Flags().Float64Var(&o.fps, "fps", 0, "frame rate to sample at, in frames per second (default: the video's own)")
	cmd.Flags().StringVar(&o.resize, "resize", "", "frame size WxH in pixels, for example 512x512 (default: the video's own)")
	cmd.MarkFlagRequired("out")

	return cmd
}

func runExtract(video string, o extractOptions) error {
	options := codec.ReaderOptions{FPS: o.fps}
	if o.fps < 0 {
		return fmt.Errorf("invalid --fps %v: must be positive", o.fps)
	}
	if o.resize != "" {
		size, err := codec.ParseSize(o.resize)
		if err != nil {
			return fmt.Errorf("--resize: %w", err)
		}
		options.Size = size
	}

	reader, err := codec.Open(video, options)
	if err != nil {
		return err
	}
	defer reader.Close()

	info := reader.Info()
	log.Info().Str("video", video).Int("width", info.Width).Int("height", info.Height).
		Float64("fps", info.FrameRate).Int("rotation", info.Rotation).Msg("extract")

	dir := filepath.Join(o.out, "frames")
	frames, err := codec.NewSequenceWriter(dir)
	if err != nil {
		return err
	}
	defer frames.Abort()

	bar := newProgress(info.FrameCount, "extract")
	frame := &codec.Frame{}
	for {
		err := reader.Read(frame)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}

		if err := frames.Write(frame); err != nil {
			return err
		}
		bar.Add(1)
	}
	bar.Finish()

	if frames.Count() == 0 {
		return fmt.Errorf("extract %q: the video has no frames", video)
	}
	if err := frames.Commit(); err != nil {
		return err
	}

	log.Info().Str("dir", dir).Int("frames", frames.Count()).Msg("extracted")
	return nil
}
