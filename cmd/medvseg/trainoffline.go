package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/rs/zerolog/log"
	"github.com/spf13/cobra"

	"github.com/medvseg/medvseg/segment"
	"github.com/medvseg/medvseg/trainer"
	"github.com/medvseg/medvseg/trainer/unet"
)

// trainOfflineDefaults are the training settings of train-offline: a
// smaller input and fewer epochs than medvseg train, so a clip of a few
// hundred frames trains in minutes on a CPU.
var trainOfflineDefaults = func() trainer.TrainOptions {
	o := trainer.DefaultTrainOptions
	o.InputSize = 128
	o.Epochs = 20
	return o
}()

type trainOfflineOptions struct {
	trainer.PipelineOptions
	seedFrames string
	resize     string
	channels   string
	device     string
}

func newTrainOfflineCommand(global *globalOptions) *cobra.Command {
	o := trainOfflineOptions{PipelineOptions: trainer.PipelineOptions{
		Propagate: trainer.DefaultPropagateOptions,
		Filter:    trainer.DefaultFilterOptions,
		Train:     trainOfflineDefaults,
	}}
	o.channels = joinInts(unet.DefaultChannels)

	cmd := &cobra.Command{
		Use:   "train-offline (--video VIDEO --seeds DIR | --data CLIP|ROOT --seed-frames N) --out RUN",
		Short: "Train a student model from a video and a few seed masks, with a report and an overlay video",
		Long: `train-offline runs the whole offline pipeline into the run folder RUN:

  extract    RUN/frames/0001.png ... from --video (or the frames of --data,
             names kept), RUN/seeds/ the seed masks, RUN/source.json
  propagate  RUN/pseudo/masks/, RUN/pseudo/propagation.json
  filter     RUN/filtered/{frames,masks}/, RUN/filtered/filter.json,
             RUN/pseudo/dropped/
  train      RUN/checkpoints/{last,best}, RUN/train_history.json
  export     RUN/model.onnx
  render     RUN/overlay.mp4 (the student's mask on every frame) and
             RUN/student/masks/
  eval       RUN/eval.json: Dice, IoU and boundary F of the pseudo-labels,
             the filtered pseudo-labels and the student against ground truth
  report     RUN/report.json, RUN/report.html with its PNGs in RUN/report/

Seed masks are matched to frames by the number in their names, so 7.png,
0007.png and frame_0007.png all mean frame 7. With --data CLIP (a folder
with frames/ and masks/), --seed-frames picks the seeds from CLIP/masks,
and the masks of every other frame serve as ground truth unless --gt or
--no-gt is given. Seed frames are left out of every score, so the scores
are on frames whose hand-drawn mask no stage has seen.

--data ROOT, a folder of clip folders ROOT/<clip>/{frames,masks}, trains
one student on all of them. Each clip is extracted, propagated and
filtered on its own, so optical flow never crosses from one clip into
another, and its files go to RUN/clips/<clip>/ (frames, seeds, pseudo,
filtered, source.json) instead of RUN/. The filtered pseudo-labels of all
clips are pooled for one training run, and RUN/checkpoints, RUN/model.onnx
and the report stay at the top of RUN. Render and eval write each clip's
RUN/clips/<clip>/overlay.mp4, student/masks/ and eval.json; there is no
RUN/overlay.mp4. --seed-frames applies to every clip, numbered as in its
masks/; --seeds and --gt then name folders with one subfolder per clip,
DIR/<clip>/. The report gives each clip's scores and the scores pooled
over every frame of every clip.

Rerunning with the same --out resumes: RUN/stages.json records a
fingerprint of each stage's inputs and options (per clip for the per-clip
stages), a stage whose fingerprint matches is skipped, and an interrupted
training continues from RUN/checkpoints/last. A changed input or option
reruns its stage and every stage after it.`,
		Example: "  medvseg train-offline --video clip.mp4 --seeds seeds/ --out run1\n" +
			"  medvseg train-offline --data data/seq01 --seed-frames 1 --out run2 --epochs 10 --input-size 128\n" +
			"  medvseg train-offline --data data --seed-frames 1 --out run3",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTrainOffline(cmd.Context(), global, o)
		},
	}

	f := cmd.Flags()
	f.StringVar(&o.Video, "video", "", "video to train on; its frames are extracted to RUN/frames")
	f.StringVar(&o.Data, "data", "", "clip folder with frames/ and masks/, or a root of clip folders, to train on instead of --video")
	f.StringVarP(&o.Out, "out", "o", "", "run folder; rerun with the same folder to resume (required)")
	f.StringVar(&o.Seeds, "seeds", "", "folder of seed masks (PNG, 0/255, named by frame number), one subfolder per clip under a root; with --data, default each clip's masks/")
	f.StringVar(&o.seedFrames, "seed-frames", "", "comma-separated frame numbers to take seeds for, in every clip, for example 1,40 (default: every mask of the seed folder)")
	f.StringVar(&o.GT, "gt", "", "folder of ground-truth masks named by frame number, one subfolder per clip under a root (with --data, default each clip's masks/)")
	f.BoolVar(&o.NoGT, "no-gt", false, "score nothing, even when --data has masks")
	f.Float64Var(&o.Extract.FPS, "fps", 0, "frame rate to sample --video at, in frames per second (default: the video's own; 25 for --data)")
	f.StringVar(&o.resize, "resize", "", "frame size WxH in pixels to extract --video at (default: the video's own)")

	f.StringVar(&o.Propagate.Flow.Method, "flow", o.Propagate.Flow.Method,
		fmt.Sprintf("optical flow method of the propagation: one of %s", strings.Join(segment.FlowMethods, ", ")))
	f.Float64Var(&o.Propagate.Flow.Scale, "flow-scale", o.Propagate.Flow.Scale,
		"resolution of flow and propagation as a fraction of the frame size, in (0, 1]")
	f.BoolVar(&o.Propagate.KeepFlows, "keep-flows", false, "keep the optical flows in RUN/flows, at the flow resolution, for later runs")
	f.Float64Var(&o.Filter.IoUThreshold, "iou-th", o.Filter.IoUThreshold, "lowest warp IoU of a kept pseudo-label, in [0, 1]")
	f.IntVar(&o.Filter.MinArea, "min-area", o.Filter.MinArea, "smallest kept pseudo-label, in pixels")

	f.IntVar(&o.Train.Epochs, "epochs", o.Train.Epochs, "training epochs")
	f.IntVar(&o.Train.InputSize, "input-size", o.Train.InputSize, "side of the square network input in pixels, a multiple of 8")
	f.IntVar(&o.Train.BatchSize, "batch-size", o.Train.BatchSize, "frames per training step")
	f.IntVar(&o.Train.MinStepsPerEpoch, "min-steps-per-epoch", o.Train.MinStepsPerEpoch, minStepsUsage)
	f.StringVar(&o.channels, "channels", o.channels, "encoder channels per level, comma-separated")
	f.Float64Var(&o.Train.LearningRate, "lr", o.Train.LearningRate, "peak AdamW learning rate")
	f.Float64Var(&o.Train.ValFraction, "val-fraction", o.Train.ValFraction,
		"fraction of each clip's filtered frames held out for validation, those nearest a seed frame; the model is the epoch with the highest Dice on them")
	f.IntVar(&o.Train.Threads, "threads", o.Train.Threads,
		"CPU threads of libtorch and of ONNX Runtime (the default is this machine's CPU count)")
	f.Uint64Var(&o.Train.RandomSeed, "random-seed", o.Train.RandomSeed,
		"seed of weight initialisation, shuffling and augmentation; the same seed gives the same model")
	f.Float64Var(&o.Threshold, "threshold", 0.5, "probability above which the model counts a pixel as lesion, in (0, 1)")
	f.StringVar(&o.device, "device", "auto", "where the student runs in the render stage: auto, cpu or cuda")
	cmd.MarkFlagRequired("out")

	return cmd
}

func runTrainOffline(ctx context.Context, global *globalOptions, o trainOfflineOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()

	var err error
	if o.SeedFrames, err = parseFrameNumbers(o.seedFrames); err != nil {
		return err
	}
	if o.Train.Channels, err = parseInts(o.channels); err != nil {
		return fmt.Errorf("invalid --channels %q: %w", o.channels, err)
	}
	if o.Extract, err = parseExtractOptions(o.Extract.FPS, o.resize); err != nil {
		return err
	}
	if o.Device, err = segment.ParseDevice(o.device); err != nil {
		return err
	}
	o.RuntimeLibrary = global.ortLib
	o.Version = buildVersion()

	progress := newStageProgress()
	defer progress.finish()
	o.Progress = progress.update

	result, err := trainer.RunPipeline(ctx, o.PipelineOptions)
	progress.finish()
	if err != nil {
		return err
	}

	for _, clip := range result.Report.Clips {
		if dice := clip.Student.MeanDice; dice != nil {
			log.Info().Str("clip", clip.Name).Float64("student_dice", *dice).Int("gt_frames", clip.Student.GTFrames).
				Str("overlay", filepath.Join(o.Out, clip.Overlay)).Msg("clip scored")
		}
	}
	event := log.Info().Str("out", o.Out).Int("kept", result.Report.Filtered.Kept).
		Int("best_epoch", result.Report.Training.BestEpoch)
	if dice := result.Report.Student.MeanDice; dice != nil {
		event = event.Float64("student_dice", *dice).Int("gt_frames", result.Report.Student.GTFrames)
	}
	event.Msg("train-offline finished: open report.html in the run folder")
	return nil
}
