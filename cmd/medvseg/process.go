package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog/log"
	"github.com/spf13/cobra"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/segment"
	"github.com/medvseg/medvseg/stream"
)

type processOptions struct {
	loopOptions
	out      string
	seeds    string
	masksDir string
	smooth   float64
	crf      int
	preset   string
}

func newProcessCommand(global *globalOptions) *cobra.Command {
	var o processOptions

	cmd := &cobra.Command{
		Use:   "process VIDEO -o overlay.mp4 (--model model.onnx | --seeds DIR)",
		Short: "Segment a recorded video and write it with the lesion overlay",
		Long: `process runs the model on keyframes of a recorded video and propagates the
mask with optical flow on the frames between, then writes the video with the
mask drawn over it. Audio, if any, is copied through. The output is deterministic: the same input and options
give the same overlay whatever the machine load.

With --seeds DIR and no model, the seed masks in DIR (PNG, named by the
1-based number of their frame, such as 0001.png) are propagated forward
through the video instead: a preview of the seeds before training. Frames
before the first seed stay empty; propagate carries seeds both ways.

It ends by printing frame and keyframe counts, frames per second, and the
latency of each stage after decoding started (p50, p95, max).`,
		Example: "  medvseg process clip.mp4 -o overlay.mp4 --model run/model.onnx --masks-dir masks\n" +
			"  medvseg process clip.mp4 -o preview.mp4 --seeds seeds/",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runProcess(cmd, global, args[0], o)
		},
	}

	f := cmd.Flags()
	o.addFlags(f, "ONNX model to run on keyframes")
	f.StringVarP(&o.out, "out", "o", "", "output mp4 with the overlay (required)")
	f.StringVar(&o.seeds, "seeds", "", "folder of seed masks to propagate instead of running a model")
	f.StringVar(&o.masksDir, "masks-dir", "", "also write every binary mask (0/255 PNG, 0001.png ...) to this folder")
	f.Float64Var(&o.smooth, "smooth", 0, "weight in [0, 1) of the propagated mask blended into each model result; 0 is off")
	f.IntVar(&o.crf, "crf", 20, "x264 constant rate factor of the output, 0-51, lower is better quality")
	f.StringVar(&o.preset, "preset", "veryfast", "x264 speed preset of the output, ultrafast to veryslow")
	cmd.MarkFlagRequired("out")

	return cmd
}

func runProcess(cmd *cobra.Command, global *globalOptions, video string, o processOptions) error {
	if err := checkProcessPaths(video, o); err != nil {
		return err
	}

	reader, err := codec.Open(video, codec.ReaderOptions{KeepAudio: true})
	if err != nil {
		return err
	}
	defer reader.Close()
	info := reader.Info()

	segmenter, threshold, closeSegmenter, err := newSegmenter(global, o, info)
	if err != nil {
		return err
	}
	defer closeSegmenter()

	options := o.streamOptions(threshold)
	options.Smooth = o.smooth
	if o.seeds != "" {
		// Seeds exist only on their own frames: ask on every frame.
		options.KeyframeInterval = 1
	}

	processor, err := stream.NewProcessor(segmenter, options)
	if err != nil {
		return err
	}
	defer processor.Close()

	sinks, err := newProcessSinks(o, info, reader.Audio())
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	log.Info().Str("video", video).Str("out", o.out).Int("width", info.Width).Int("height", info.Height).
		Float64("fps", info.FrameRate).Int("keyframe_interval", options.KeyframeInterval).Str("flow", o.flow).
		Msg("process")

	stats, err := processor.Run(ctx, &progressSource{Source: reader, bar: newProgress(info.FrameCount, "process")}, sinks...)
	if err != nil {
		return err
	}

	if n := reader.Corrupt(); n > 0 {
		log.Warn().Str("video", video).Int("corrupt_packets", n).
			Msg("skipped damaged video packets; the overlay has fewer frames than the file lists")
	}
	if seeds, ok := segmenter.(*stream.SeedSegmenter); ok && seeds.Used() == 0 {
		return fmt.Errorf("no seed mask in %q matches a frame of %q", o.seeds, video)
	}

	printStats(cmd.OutOrStdout(), stats)
	log.Info().Str("out", o.out).Int("frames", stats.Frames).Int("keyframes", stats.Keyframes).
		Float64("fps", stats.FPS()).Msg("processed")
	return nil
}

func checkProcessPaths(video string, o processOptions) error {
	if (o.model == "") == (o.seeds == "") {
		return errors.New("give exactly one of --model (a trained ONNX model) or --seeds (a folder of seed masks)")
	}
	if err := checkProcessFlags(o); err != nil {
		return err
	}
	if o.model != "" {
		if same, err := sameFile(o.model, o.out); err == nil && same {
			return fmt.Errorf("output %q is the model: choose another --out", o.out)
		}
	}
	if !strings.EqualFold(filepath.Ext(o.out), ".mp4") {
		return fmt.Errorf("output %q: the overlay is written as MP4; name it with .mp4", o.out)
	}

	in, errIn := filepath.Abs(video)
	out, errOut := filepath.Abs(o.out)
	if errIn == nil && errOut == nil && in == out {
		return fmt.Errorf("output %q is the input video: choose another --out", o.out)
	}
	if same, err := sameFile(video, o.out); err == nil && same {
		return fmt.Errorf("output %q is the input video: choose another --out", o.out)
	}
	return nil
}

// checkProcessFlags rejects values outside the ranges the help gives,
// before any work starts.
func checkProcessFlags(o processOptions) error {
	if err := o.validate(); err != nil {
		return err
	}
	if o.crf < 0 || o.crf > 51 {
		return fmt.Errorf("invalid --crf %d: x264 takes 0 (lossless) to 51", o.crf)
	}
	if !slices.Contains(x264Presets, o.preset) {
		return fmt.Errorf("invalid --preset %q: use one of %s", o.preset, strings.Join(x264Presets, ", "))
	}
	return nil
}

// x264Presets are the speed presets of libx264, fastest first.
var x264Presets = []string{"ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
	"veryslow", "placebo"}

func sameFile(a, b string) (bool, error) {
	infoA, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	infoB, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	return os.SameFile(infoA, infoB), nil
}

// newSegmenter loads the model or the seeds, and returns the threshold to
// use and a function that releases what it loaded.
func newSegmenter(global *globalOptions, o processOptions, info codec.Info) (stream.Segmenter, float64, func(), error) {
	if o.seeds != "" {
		seeds, err := stream.NewSeedSegmenter(o.seeds, info.FrameCount)
		if err != nil {
			return nil, 0, nil, err
		}
		return seeds, thresholdOr(o.threshold, 0.5), func() {}, nil
	}

	model, err := loadModel(global, o.model, o.device, o.threads)
	if err != nil {
		return nil, 0, nil, err
	}
	threshold := thresholdOr(o.threshold, float64(model.Info().Threshold))
	return stream.NewModelSegmenter(model), threshold, func() { model.Close() }, nil
}

func thresholdOr(flagValue, fallback float64) float64 {
	if flagValue != 0 {
		return flagValue
	}
	return fallback
}

// loadModel loads ONNX Runtime and a model on the requested device.
func loadModel(global *globalOptions, path, device string, threads int) (*segment.Model, error) {
	parsed, err := segment.ParseDevice(device)
	if err != nil {
		return nil, err
	}
	if err := segment.InitRuntime(segment.LibraryPath(global.ortLib)); err != nil {
		return nil, err
	}
	return segment.LoadModel(path, segment.ModelOptions{Device: parsed, IntraOpThreads: threads})
}

// newProcessSinks creates the overlay mp4, which copies the input's audio
// when it has some, and the masks folder when requested.
func newProcessSinks(o processOptions, info codec.Info, audio *codec.AudioTrack) ([]stream.Sink, error) {
	mp4, err := stream.NewMP4Sink(o.out, codec.WriterOptions{
		EncoderOptions: codec.EncoderOptions{
			Width: info.Width, Height: info.Height, FrameRate: info.FrameRate, CRF: o.crf, Preset: o.preset,
		},
		Audio: audio,
	})
	if err != nil {
		return nil, err
	}
	sinks := []stream.Sink{mp4}

	if o.masksDir != "" {
		masks, err := stream.NewMasksSink(o.masksDir)
		if err != nil {
			mp4.Close(err)
			return nil, err
		}
		sinks = append(sinks, masks)
	}
	return sinks, nil
}

func printStats(out io.Writer, stats stream.Stats) {
	fmt.Fprintf(out, "frames     %d\n", stats.Frames)
	fmt.Fprintf(out, "keyframes  %d", stats.Keyframes)
	reasons := make([]string, 0, len(stats.Reasons))
	for reason := range stats.Reasons {
		reasons = append(reasons, reason)
	}
	sort.Strings(reasons)
	for _, reason := range reasons {
		fmt.Fprintf(out, "  %s %d", reason, stats.Reasons[reason])
	}
	fmt.Fprintf(out, "\nfps        %.1f (%d frames in %.2f s)\n\n", stats.FPS(), stats.Frames, stats.Elapsed.Seconds())

	table := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(table, "latency after decode start\tp50 ms\tp95 ms\tmax ms\t")
	for _, stage := range stream.Stages {
		s, ok := stats.Latency[stage]
		if !ok {
			continue
		}
		fmt.Fprintf(table, "%s\t%.1f\t%.1f\t%.1f\t\n", stage, ms(s.P50), ms(s.P95), ms(s.Max))
	}
	table.Flush()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
