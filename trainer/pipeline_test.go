package trainer

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/codec/synth"
	"github.com/medvseg/medvseg/segment"
)

// pipelineClip writes a 160x120 synth clip of 40 frames (clip.mp4,
// frames/, masks/) and a seeds folder with the mask of frame 1.
func pipelineClip(t *testing.T) (clip, seeds string) {
	t.Helper()
	clip = t.TempDir()
	o := synth.Options{Width: 160, Height: 120, Frames: 40, FPS: 25, RandomSeed: 1}
	if err := synth.WriteClip(clip, o, nil); err != nil {
		t.Fatal(err)
	}
	seeds = t.TempDir()
	if err := copyFile(filepath.Join(clip, "masks", "0001.png"), filepath.Join(seeds, "0001.png")); err != nil {
		t.Fatal(err)
	}
	return clip, seeds
}

// pipelineOptions trains for 2 epochs at 64x64, a few seconds on 2 cores.
func pipelineOptions(t *testing.T, clip, seeds, out string) PipelineOptions {
	train := DefaultTrainOptions
	train.Epochs = 2
	train.InputSize = 64
	train.BatchSize = 8
	train.LearningRate = 3e-3
	train.Threads = 2
	return PipelineOptions{
		Out:       out,
		Video:     filepath.Join(clip, "clip.mp4"),
		Seeds:     seeds,
		GT:        filepath.Join(clip, "masks"),
		Propagate: DefaultPropagateOptions,
		Filter:    DefaultFilterOptions,
		Train:     train,
	}
}

// skipped returns the stages that a run skipped.
func skipped(result *PipelineResult) []string {
	var names []string
	for _, s := range result.Stages {
		if s.Skipped {
			names = append(names, s.Stage)
		}
	}
	return names
}

func TestPipelineEndToEndAndResume(t *testing.T) {
	if err := segment.InitRuntime(segment.LibraryPath("")); err != nil {
		t.Fatalf("%v (make test sets %s)", err, segment.LibraryEnv)
	}
	clip, seeds := pipelineClip(t)

	// An uninterrupted run.
	straightDir := t.TempDir()
	straight, err := RunPipeline(context.Background(), pipelineOptions(t, clip, seeds, straightDir))
	if err != nil {
		t.Fatal(err)
	}
	checkRunFolder(t, straightDir, straight.Report)

	// A run stopped during the second epoch, then resumed.
	splitDir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	interrupted := pipelineOptions(t, clip, seeds, splitDir)
	interrupted.Progress = func(stage string, done, total int) {
		if stage == StageTrain && done > total/2 {
			cancel()
		}
	}
	if _, err := RunPipeline(ctx, interrupted); !errors.Is(err, context.Canceled) {
		t.Fatalf("pipeline stopped in epoch 2: error %v, want context.Canceled", err)
	}
	meta, _, err := ReadCheckpointMeta(filepath.Join(splitDir, checkpointsDir, lastName))
	if err != nil {
		t.Fatal(err)
	}
	if meta.Epoch != 1 {
		t.Errorf("checkpoint after the interruption is from epoch %d, want 1", meta.Epoch)
	}
	if fileExists(filepath.Join(splitDir, modelName)) {
		t.Errorf("interrupted run wrote %s before training finished", modelName)
	}

	resumed, err := RunPipeline(context.Background(), pipelineOptions(t, clip, seeds, splitDir))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := skipped(resumed), []string{StageExtract, StagePropagate, StageFilter}; !slices.Equal(got, want) {
		t.Errorf("resumed run skipped %v, want %v", got, want)
	}
	straightHistory, err := ReadTrainHistory(straightDir)
	if err != nil {
		t.Fatal(err)
	}
	resumedHistory, err := ReadTrainHistory(splitDir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(withoutTimes(resumedHistory.Epochs), withoutTimes(straightHistory.Epochs)) {
		t.Errorf("resumed training differs from the straight run:\n%+v\n%+v", resumedHistory.Epochs, straightHistory.Epochs)
	}
	if got, want := *resumed.Report.Student.MeanDice, *straight.Report.Student.MeanDice; got != want {
		t.Errorf("resumed run: student Dice %v, straight run %v", got, want)
	}

	// An unchanged rerun skips every stage.
	again, err := RunPipeline(context.Background(), pipelineOptions(t, clip, seeds, splitDir))
	if err != nil {
		t.Fatal(err)
	}
	all := []string{StageExtract, StagePropagate, StageFilter, StageTrain, StageExport, StageRender, StageEval}
	if got := skipped(again); !slices.Equal(got, all) {
		t.Errorf("unchanged rerun skipped %v, want %v", got, all)
	}

	// A new export threshold reruns export and the stages after it.
	threshold := pipelineOptions(t, clip, seeds, splitDir)
	threshold.Threshold = 0.6
	changed, err := RunPipeline(context.Background(), threshold)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := skipped(changed), all[:4]; !slices.Equal(got, want) {
		t.Errorf("new threshold: skipped %v, want %v", got, want)
	}

	// A new minimum of steps per epoch reruns training and nothing before
	// it; stop it as soon as training starts.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	steps := pipelineOptions(t, clip, seeds, splitDir)
	steps.Train.MinStepsPerEpoch++
	var stepsRan []string
	steps.Progress = func(stage string, done, total int) {
		if !slices.Contains(stepsRan, stage) {
			stepsRan = append(stepsRan, stage)
		}
		if stage == StageTrain {
			cancel()
		}
	}
	if _, err := RunPipeline(ctx, steps); !errors.Is(err, context.Canceled) {
		t.Fatalf("pipeline stopped in training: error %v, want context.Canceled", err)
	}
	if want := []string{StageTrain}; !slices.Equal(stepsRan, want) {
		t.Errorf("new minimum steps per epoch: stages that reported progress %v, want %v", stepsRan, want)
	}

	// A new filter threshold reruns filter and training; stop it as soon
	// as training starts.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	filter := pipelineOptions(t, clip, seeds, splitDir)
	filter.Filter.IoUThreshold = 0.5
	var ran []string
	filter.Progress = func(stage string, done, total int) {
		if !slices.Contains(ran, stage) {
			ran = append(ran, stage)
		}
		if stage == StageTrain {
			cancel()
		}
	}
	if _, err := RunPipeline(ctx, filter); !errors.Is(err, context.Canceled) {
		t.Fatalf("pipeline stopped in training: error %v, want context.Canceled", err)
	}
	if want := []string{"flow", StageFilter, StageTrain}; !slices.Equal(ran, want) {
		t.Errorf("new filter threshold: stages that reported progress %v, want %v", ran, want)
	}
}

// checkRunFolder checks the files of a finished run and their contents.
func checkRunFolder(t *testing.T, dir string, report *Report) {
	t.Helper()
	for _, name := range []string{
		"frames/0001.png", "frames/0040.png", "seeds/0001.png", "pseudo/masks/0040.png", "pseudo/dropped",
		"filtered/frames", "filtered/masks", "filtered/filter.json", "checkpoints/best", "checkpoints/last",
		"train_history.json", "model.onnx", "overlay.mp4", "student/masks/0040.png", "eval.json",
		"report.json", "report.html", "report/loss.png", "report/dice.png", "report/consistency.png",
		"report/accuracy.png", "stages.json", "source.json",
	} {
		if !fileExists(filepath.Join(dir, name)) {
			t.Errorf("run folder has no %s", name)
		}
	}

	raw, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var sections map[string]json.RawMessage
	if err := json.Unmarshal(raw, &sections); err != nil {
		t.Fatal(err)
	}
	keys := map[string]map[string]any{}
	for _, name := range []string{"student", "propagation", "filtered"} {
		var section map[string]any
		if err := json.Unmarshal(sections[name], &section); err != nil {
			t.Fatalf("report.json %s: %v", name, err)
		}
		keys[name] = section
	}
	for _, key := range []string{"student.mean_dice", "student.mean_iou", "propagation.mean_iou", "filtered.mean_iou"} {
		section, field, _ := strings.Cut(key, ".")
		value, ok := keys[section][field].(float64)
		if !ok {
			t.Errorf("report.json has no number %s", key)
			continue
		}
		if value < 0 || value > 1 {
			t.Errorf("report.json %s = %v, want a score in [0, 1]", key, value)
		}
	}
	if report.Student.GTFrames != 39 {
		t.Errorf("student scored on %d frames, want 39 (40 minus the seed)", report.Student.GTFrames)
	}
	if report.Training.Epochs != 2 {
		t.Errorf("report has %d epochs, want 2", report.Training.Epochs)
	}
	if report.Filtered.Kept+report.Filtered.Dropped != 40 {
		t.Errorf("filter kept %d and dropped %d frames, want 40 in all", report.Filtered.Kept, report.Filtered.Dropped)
	}

	html, err := os.ReadFile(filepath.Join(dir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`src="report/loss.png"`, `src="report/accuracy.png"`, `src="report/thumb_`} {
		if !strings.Contains(string(html), want) {
			t.Errorf("report.html lacks %s", want)
		}
	}
	if strings.Contains(string(html), "http://") || strings.Contains(string(html), "https://") {
		t.Errorf("report.html links to the network; it must read offline")
	}

	if n := countVideoFrames(t, filepath.Join(dir, overlayName)); n != 40 {
		t.Errorf("overlay.mp4 has %d frames, want 40", n)
	}
}

func countVideoFrames(t *testing.T, path string) int {
	t.Helper()
	reader, err := codec.Open(path, codec.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	frame := &codec.Frame{}
	n := 0
	for {
		err := reader.Read(frame)
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
}

func TestPipelineBadInput(t *testing.T) {
	clip, seeds := pipelineClip(t)
	cases := []struct {
		name string
		edit func(o *PipelineOptions)
		want string
	}{
		{"no input", func(o *PipelineOptions) { o.Video = "" }, "exactly one of --video"},
		{"video and data", func(o *PipelineOptions) { o.Data = clip }, "exactly one of --video"},
		{"video without seeds", func(o *PipelineOptions) { o.Seeds = "" }, "--seeds is required"},
		{"data without seeds", func(o *PipelineOptions) { o.Video, o.Data, o.Seeds = "", clip, "" }, "--seed-frames"},
		{"missing seed frame", func(o *PipelineOptions) { o.SeedFrames = []int{7} }, "no seed mask for frame 7"},
		{"missing video", func(o *PipelineOptions) { o.Video = filepath.Join(clip, "none.mp4") }, "none.mp4"},
		{"bad filter", func(o *PipelineOptions) { o.Filter.IoUThreshold = 2 }, "invalid IoU threshold"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := pipelineOptions(t, clip, seeds, t.TempDir())
			c.edit(&o)
			_, err := RunPipeline(context.Background(), o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

func TestPipelineClipFolderDefaultGT(t *testing.T) {
	if err := segment.InitRuntime(segment.LibraryPath("")); err != nil {
		t.Fatalf("%v (make test sets %s)", err, segment.LibraryEnv)
	}
	clip, seeds := pipelineClip(t)
	out := t.TempDir()
	o := pipelineOptions(t, clip, seeds, out)
	o.Video, o.Seeds, o.GT = "", "", ""
	o.Data = clip
	o.SeedFrames = []int{10}
	o.Train.Epochs = 1

	result, err := RunPipeline(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if got := result.Report.GT; got != filepath.Join(clip, "masks") {
		t.Errorf("ground truth %q, want the clip's masks folder", got)
	}
	if got := result.Report.Student.GTFrames; got != 39 {
		t.Errorf("student scored on %d frames, want 39 (40 minus the seed)", got)
	}
	if got := result.Report.Source.Seeds; !slices.Equal(got, []int{10}) {
		t.Errorf("seeds %v, want [10]", got)
	}
	if !fileExists(filepath.Join(out, "seeds", "0010.png")) {
		t.Errorf("run folder has no seeds/0010.png")
	}
	if got := result.Report.Source.FrameRate; got != defaultFrameRate {
		t.Errorf("frame rate %v, want %v for a clip folder", got, defaultFrameRate)
	}
}
