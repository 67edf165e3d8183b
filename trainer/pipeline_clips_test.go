package trainer

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/medvseg/medvseg/codec/synth"
	"github.com/medvseg/medvseg/segment"
)

// clipRoot writes a root of two 160x120 synth clips of 20 frames, "a" and
// "b", each with frames/ and masks/, from different scenes.
func clipRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for i, name := range []string{"a", "b"} {
		o := synth.Options{Width: 160, Height: 120, Frames: 20, FPS: 25, RandomSeed: uint64(i + 1)}
		if err := synth.WriteClip(filepath.Join(root, name), o, nil); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// rootOptions trains for 1 epoch at 64x64 on the clips of root, with the
// seed of frame 1 of each clip.
func rootOptions(t *testing.T, root, out string) PipelineOptions {
	o := pipelineOptions(t, "", "", out)
	o.Video, o.Seeds, o.GT = "", "", ""
	o.Data = root
	o.SeedFrames = []int{1}
	o.Train.Epochs = 1
	return o
}

// stageResultKeys returns "clip/stage", or "stage" for a pooled stage, for
// each stage of a result that was skipped, or that ran when skipped is false.
func stageResultKeys(result *PipelineResult, skipped bool) []string {
	var keys []string
	for _, s := range result.Stages {
		if s.Skipped != skipped || s.Stage == StageReport {
			continue
		}
		if s.Clip != "" {
			keys = append(keys, s.Clip+"/"+s.Stage)
		} else {
			keys = append(keys, s.Stage)
		}
	}
	return keys
}

func TestPipelineRootOfClips(t *testing.T) {
	if err := segment.InitRuntime(segment.LibraryPath("")); err != nil {
		t.Fatalf("%v (make test sets %s)", err, segment.LibraryEnv)
	}
	root := clipRoot(t)
	out := t.TempDir()

	result, err := RunPipeline(context.Background(), rootOptions(t, root, out))
	if err != nil {
		t.Fatal(err)
	}

	for _, name := range []string{
		"model.onnx", "checkpoints/best", "train_history.json", "report.json", "report.html",
		"report/loss.png", "report/consistency_a.png", "report/accuracy_b.png",
	} {
		if !fileExists(filepath.Join(out, name)) {
			t.Errorf("run folder has no %s", name)
		}
	}
	for _, clip := range []string{"a", "b"} {
		for _, name := range []string{
			"frames/0020.png", "seeds/0001.png", "source.json", "pseudo/masks/0020.png",
			"pseudo/propagation.json", "filtered/filter.json", "student/masks/0020.png", "eval.json", "overlay.mp4",
		} {
			if !fileExists(filepath.Join(out, clipsFolder, clip, name)) {
				t.Errorf("clip %s has no %s", clip, name)
			}
		}
		if n := countVideoFrames(t, filepath.Join(out, clipsFolder, clip, overlayName)); n != 20 {
			t.Errorf("clip %s: overlay.mp4 has %d frames, want 20", clip, n)
		}

		prop, err := readPropagation(filepath.Join(out, clipsFolder, clip))
		if err != nil {
			t.Fatal(err)
		}
		if got := len(prop.Frames); got != 20 {
			t.Errorf("clip %s: propagated through %d frames, want its own 20", clip, got)
		}
	}
	for _, name := range []string{"frames", overlayName} {
		if fileExists(filepath.Join(out, name)) {
			t.Errorf("run on a root of clips has a top-level %s; it belongs in clips/<clip>/", name)
		}
	}

	history, err := ReadTrainHistory(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(history.Clips) != 2 {
		t.Fatalf("training read %d clip folders, want 2: %+v", len(history.Clips), history.Clips)
	}
	trained := 0
	for _, split := range history.Clips {
		if split.TrainFrames == 0 {
			t.Errorf("training used no frame of %s", split.Data)
		}
		trained += split.TrainFrames
	}
	if trained != history.TrainFrames {
		t.Errorf("clips contributed %d training frames, history counts %d", trained, history.TrainFrames)
	}

	report := result.Report
	var names []string
	for _, c := range report.Clips {
		names = append(names, c.Name)
	}
	if !slices.Equal(names, []string{"a", "b"}) {
		t.Fatalf("report clips %v, want [a b]", names)
	}
	weighted := 0.0
	for _, c := range report.Clips {
		if c.Student.GTFrames != 19 {
			t.Errorf("clip %s: student scored on %d frames, want 19 (20 minus the seed)", c.Name, c.Student.GTFrames)
		}
		if c.Student.MeanDice == nil {
			t.Fatalf("clip %s: no student Dice", c.Name)
		}
		if c.TrainFrames == 0 {
			t.Errorf("clip %s: report counts no training frame", c.Name)
		}
		weighted += *c.Student.MeanDice * float64(c.Student.GTFrames)
	}
	if report.Student.GTFrames != 38 {
		t.Errorf("pooled student score on %d frames, want 38", report.Student.GTFrames)
	}
	if report.Student.MeanDice == nil {
		t.Fatal("report has no pooled student Dice")
	}
	if pooled := weighted / 38; math.Abs(*report.Student.MeanDice-pooled) > 1e-9 {
		t.Errorf("pooled student Dice %v, want the frame-weighted mean of the clips %v", *report.Student.MeanDice, pooled)
	}
	if report.Source.Frames != 40 {
		t.Errorf("report counts %d frames, want 40 in the two clips", report.Source.Frames)
	}

	html, err := os.ReadFile(filepath.Join(out, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Clip a", "Clip b", `href="clips/a/overlay.mp4"`, `src="report/accuracy_a.png"`,
		`src="report/thumb_b_`, "all clips, pooled"} {
		if !strings.Contains(string(html), want) {
			t.Errorf("report.html lacks %s", want)
		}
	}

	// An unchanged rerun skips every stage of every clip.
	again, err := RunPipeline(context.Background(), rootOptions(t, root, out))
	if err != nil {
		t.Fatal(err)
	}
	if ran := stageResultKeys(again, false); len(ran) > 0 {
		t.Errorf("unchanged rerun ran %v, want every stage skipped", ran)
	}
	if got := len(stageResultKeys(again, true)); got != 12 {
		t.Errorf("unchanged rerun skipped %d stages, want 12 (5 per clip, train and export)", got)
	}

	// A replaced frame of clip b reruns clip b's stages and the pooled
	// ones, not those of clip a.
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(filepath.Join(root, "b", "frames", "0005.png"), later, later); err != nil {
		t.Fatal(err)
	}
	changed, err := RunPipeline(context.Background(), rootOptions(t, root, out))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a/extract", "a/propagate", "a/filter"}
	if got := stageResultKeys(changed, true); !slices.Equal(got, want) {
		t.Errorf("after a new frame in clip b: skipped %v, want %v", got, want)
	}
}

func TestPipelineRootBadInput(t *testing.T) {
	cases := []struct {
		name string
		edit func(t *testing.T, root string, o *PipelineOptions)
		want []string
	}{
		{"empty root", func(t *testing.T, root string, o *PipelineOptions) {
			o.Data = t.TempDir()
		}, []string{"has no frames folder", "ROOT/<clip>/frames"}},
		{"no mask for the seed frame", func(t *testing.T, root string, o *PipelineOptions) {
			if err := os.Remove(filepath.Join(root, "b", "masks", "0001.png")); err != nil {
				t.Fatal(err)
			}
		}, []string{`clip "b"`, "no seed mask for frame 1", filepath.Join("b", "masks"), "DIR/<clip>/"}},
		{"clip without masks", func(t *testing.T, root string, o *PipelineOptions) {
			if err := os.RemoveAll(filepath.Join(root, "a", "masks")); err != nil {
				t.Fatal(err)
			}
		}, []string{"has no masks folder", "--seeds DIR with DIR/a/"}},
		{"seeds without clip folders", func(t *testing.T, root string, o *PipelineOptions) {
			o.Seeds = t.TempDir()
		}, []string{"--seeds", "has no folder for the clips a, b"}},
		{"gt without clip folders", func(t *testing.T, root string, o *PipelineOptions) {
			o.GT = filepath.Join(root, "a", "masks")
		}, []string{"--gt", "has no folder for the clips a, b"}},
		{"clip nested a level deeper", func(t *testing.T, root string, o *PipelineOptions) {
			nested := filepath.Join(root, "patient2")
			if err := os.MkdirAll(nested, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(filepath.Join(root, "b"), filepath.Join(nested, "b")); err != nil {
				t.Fatal(err)
			}
		}, []string{"patient2", "not clip folders", "ROOT/<clip>/frames"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := clipRoot(t)
			o := rootOptions(t, root, t.TempDir())
			c.edit(t, root, &o)
			_, err := RunPipeline(context.Background(), o)
			if err == nil {
				t.Fatalf("no error, want one containing %q", c.want)
			}
			for _, want := range c.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
}

func TestPipelineRootOfSegColClips(t *testing.T) {
	if err := segment.InitRuntime(segment.LibraryPath("")); err != nil {
		t.Fatalf("%v (make test sets %s)", err, segment.LibraryEnv)
	}
	// Links in a temporary root, because the shared data may not be copied.
	root := t.TempDir()
	clips := []string{"Seq_003_35920", "Seq_003_59280"}
	for _, clip := range clips {
		target, err := filepath.Abs(endoClip(t, filepath.Join("segcol", clip)))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(root, clip)); err != nil {
			t.Fatal(err)
		}
	}
	o := rootOptions(t, root, t.TempDir())
	o.SeedFrames = []int{0}

	result, err := RunPipeline(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	report := result.Report
	if len(report.Clips) != 2 {
		t.Fatalf("report has %d clips, want 2", len(report.Clips))
	}
	for i, c := range report.Clips {
		if c.Name != clips[i] {
			t.Errorf("report clip %d is %q, want %q", i, c.Name, clips[i])
		}
		if c.Student.GTFrames != 9 {
			t.Errorf("clip %s: student scored on %d frames, want 9 (10 minus the seed)", c.Name, c.Student.GTFrames)
		}
		if c.TrainFrames == 0 {
			t.Errorf("clip %s: no frame went to training", c.Name)
		}
		if !slices.Equal(c.Source.Seeds, []int{0}) {
			t.Errorf("clip %s: seeds %v, want [0]", c.Name, c.Source.Seeds)
		}
	}
	if report.Student.MeanDice == nil || report.Student.GTFrames != 18 {
		t.Errorf("pooled student score on %d frames (Dice %v), want 18 frames", report.Student.GTFrames, report.Student.MeanDice)
	}
}
