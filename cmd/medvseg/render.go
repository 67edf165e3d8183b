package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/medvseg/medvseg/segment"
	"github.com/medvseg/medvseg/trainer"
)

type renderOptions struct {
	run    string
	device string
	trainer.RenderOptions
}

func newRenderCommand(global *globalOptions) *cobra.Command {
	var o renderOptions

	cmd := &cobra.Command{
		Use:   "render (--run RUN | --model model.onnx (--video VIDEO | --frames DIR) -o overlay.mp4)",
		Short: "Run a model on every frame and write the video with its mask drawn over it",
		Long: `render runs the model on every frame (no keyframes, no propagation between
them, unlike medvseg process) and writes an H.264 mp4 with the mask drawn
over each frame.

With --run RUN it redoes the render stage of medvseg train-offline: the
model RUN/model.onnx on the frames RUN/frames, at the frame rate in
RUN/source.json, to RUN/overlay.mp4 and RUN/student/masks/. Flags given
with --run replace those defaults.

For a run of train-offline on a root of clips, --run RUN renders every
clip: RUN/clips/<clip>/frames to RUN/clips/<clip>/overlay.mp4 and
RUN/clips/<clip>/student/masks/. Only --model, --device and --threads
apply then; to render one clip elsewhere, pass --model RUN/model.onnx
--frames RUN/clips/<clip>/frames -o FILE.`,
		Example: "  medvseg render --run run1\n" +
			"  medvseg render --model run1/model.onnx --video clip.mp4 -o overlay.mp4",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRender(cmd.Context(), global, o)
		},
	}

	f := cmd.Flags()
	f.StringVar(&o.run, "run", "", "run folder of medvseg train-offline to render")
	f.StringVar(&o.Model, "model", "", "ONNX model to run on every frame")
	f.StringVar(&o.Video, "video", "", "video to segment")
	f.StringVar(&o.Frames, "frames", "", "folder of PNG frames to segment, in name order, instead of --video")
	f.Float64Var(&o.FrameRate, "fps", 0, "frame rate of the output for --frames, in frames per second (default 25)")
	f.StringVarP(&o.Out, "out", "o", "", "output mp4")
	f.StringVar(&o.MasksDir, "masks-dir", "", "also write every binary mask (0/255 PNG) to this folder")
	f.StringVar(&o.device, "device", "auto", "where the model runs: auto (CUDA when available, else CPU), cpu or cuda")
	f.IntVar(&o.Threads, "threads", 0, "ONNX Runtime threads per operator; 0 lets ONNX Runtime choose")

	return cmd
}

func runRender(ctx context.Context, global *globalOptions, o renderOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()

	if o.run != "" {
		if _, err := os.Stat(o.run); err != nil {
			return fmt.Errorf("--run %q: run folder not found: give the --out folder of medvseg train-offline", o.run)
		}
		clips, err := trainer.RunClips(o.run)
		if err != nil {
			return err
		}
		if err := checkRunModel(o, len(clips) > 0); err != nil {
			return err
		}
		unlock, err := trainer.LockRun(o.run)
		if err != nil {
			return err
		}
		defer unlock()
		if len(clips) > 0 {
			return renderClips(ctx, global, o, clips)
		}
		if err := runDefaults(&o); err != nil {
			return err
		}
	}
	if o.Model == "" || o.Out == "" {
		return errors.New("give --run RUN, or --model and -o with --video or --frames")
	}

	var err error
	if o.Device, err = segment.ParseDevice(o.device); err != nil {
		return err
	}
	o.RuntimeLibrary = global.ortLib

	progress := newStageProgress()
	defer progress.finish()
	o.Progress = progress.update
	_, err = trainer.Render(ctx, o.RenderOptions)
	return err
}

// renderClips renders every clip of a run of train-offline on a root of
// clips with the run's model, or o.Model when set.
func renderClips(ctx context.Context, global *globalOptions, o renderOptions, clips []string) error {
	if o.Video != "" || o.Frames != "" || o.Out != "" || o.MasksDir != "" || o.FrameRate != 0 {
		return fmt.Errorf("--run %q has one folder per clip, so --video, --frames, -o, --masks-dir and --fps do not apply; "+
			"to render one clip elsewhere, pass --model %s --frames %s -o FILE",
			o.run, filepath.Join(o.run, "model.onnx"), filepath.Join(clips[0], "frames"))
	}
	if o.Model == "" {
		o.Model = filepath.Join(o.run, "model.onnx")
	}
	for _, clip := range clips {
		clipOptions := o
		clipOptions.run = ""
		clipOptions.Frames = filepath.Join(clip, "frames")
		clipOptions.Out = filepath.Join(clip, "overlay.mp4")
		clipOptions.MasksDir = filepath.Join(clip, "student", "masks")
		rate, err := trainer.RunFrameRate(clip)
		if err != nil {
			return fmt.Errorf("--run %q: %w", o.run, err)
		}
		clipOptions.FrameRate = rate
		if err := runRender(ctx, global, clipOptions); err != nil {
			return err
		}
	}
	return nil
}

// runDefaults fills the options that --run implies and flags left empty.
// checkRunModel rejects --model with --run when the output would land in
// the run folder. Its report, its eval and a rerun of train-offline all
// take the run's overlay and masks to come from RUN/model.onnx.
func checkRunModel(o renderOptions, clips bool) error {
	own := filepath.Join(o.run, "model.onnx")
	if o.Model == "" || filepath.Clean(o.Model) == filepath.Clean(own) {
		return nil
	}
	if clips || o.Out == "" {
		return fmt.Errorf("--model %s with --run %s would replace the run's overlay and masks, which its report "+
			"describes as made by %s: give -o FILE outside the run, or leave out --model",
			o.Model, o.run, own)
	}
	return nil
}

func runDefaults(o *renderOptions) error {
	if o.Model == "" {
		o.Model = filepath.Join(o.run, "model.onnx")
	}
	if o.Video == "" && o.Frames == "" {
		o.Frames = filepath.Join(o.run, "frames")
	}
	if o.Out == "" {
		o.Out = filepath.Join(o.run, "overlay.mp4")
		if o.MasksDir == "" {
			o.MasksDir = filepath.Join(o.run, "student", "masks")
		}
	}
	if o.FrameRate == 0 && o.Video == "" {
		rate, err := trainer.RunFrameRate(o.run)
		if err != nil {
			return fmt.Errorf("--run %q: %w; or pass --fps", o.run, err)
		}
		o.FrameRate = rate
	}
	return nil
}
