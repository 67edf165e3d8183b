package main

import (
	"bytes"
	"image"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/codec/synth"
	"github.com/medvseg/medvseg/segment/onnx"
)

// runCommand runs medvseg in-process with args and returns its standard output.
func runCommand(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append(args, "--log-level", "warn"))
	err := root.Execute()
	return out.String(), err
}

// synthClip writes a small synth clip into dir and returns its folder.
func synthClip(t *testing.T, frames int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "clip")
	o := synth.Options{Width: 192, Height: 144, Frames: frames, FPS: 25, RandomSeed: 11}
	if err := synth.WriteClip(dir, o, nil); err != nil {
		t.Fatal(err)
	}
	return dir
}

func writeModel(t *testing.T, model *onnx.Model) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "model.onnx")
	if err := model.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	return path
}

func probeFrames(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	return strings.TrimSpace(string(out))
}

func TestProcessWritesEveryFrame(t *testing.T) {
	clip := synthClip(t, 30)
	rule, err := onnx.ColourRule(192, 144)
	if err != nil {
		t.Fatal(err)
	}
	model := writeModel(t, rule)
	out := filepath.Join(t.TempDir(), "overlay.mp4")
	masks := filepath.Join(t.TempDir(), "masks")

	stdout, err := runCommand(t, "process", filepath.Join(clip, "clip.mp4"), "-o", out, "--model", model,
		"--masks-dir", masks, "--keyframe-interval", "5")
	if err != nil {
		t.Fatal(err)
	}
	if n := probeFrames(t, out); n != "30" {
		t.Errorf("ffprobe counts %s frames in overlay.mp4, expected 30", n)
	}
	entries, _ := codec.ListSequence(masks)
	if len(entries) != 30 {
		t.Errorf("%d mask files, expected 30", len(entries))
	}
	for _, want := range []string{"frames     30", "keyframes", "p50 ms", "encoded"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary does not contain %q:\n%s", want, stdout)
		}
	}
}

func TestProcessBadInput(t *testing.T) {
	clip := synthClip(t, 10)
	video := filepath.Join(clip, "clip.mp4")
	before, _ := os.ReadFile(video)

	rule, _ := onnx.ColourRule(192, 144)
	model := writeModel(t, rule)

	// A model whose input size is dynamic and has no metadata cannot be sized.
	g := onnx.NewGraph("dynamic")
	x := g.Input(onnx.InputName, 1, 3, -1, -1)
	w := g.Float32("w", []int64{1, 3, 1, 1}, []float32{1, 1, 1})
	g.Output(g.Conv(x, w, "", 1, 0), onnx.OutputName, 1, 1, -1, -1)
	dynamic := writeModel(t, &onnx.Model{Graph: g})

	unmatched := t.TempDir()
	if err := codec.WriteGray(filepath.Join(unmatched, "0999.png"), synthMask(192, 144)); err != nil {
		t.Fatal(err)
	}

	outDir := t.TempDir()
	out := filepath.Join(outDir, "overlay.mp4")
	cases := []struct {
		name    string
		args    []string
		message string
	}{
		{"output is input", []string{"process", video, "-o", video, "--model", model}, "is the input video"},
		{"no model or seeds", []string{"process", video, "-o", out}, "--model"},
		{"dynamic model", []string{"process", video, "-o", out, "--model", dynamic}, "input size"},
		{"missing model", []string{"process", video, "-o", out, "--model", filepath.Join(outDir, "none.onnx")}, "none.onnx"},
		{"unmatched seeds", []string{"process", video, "-o", out, "--seeds", unmatched}, "frame 999"},
		{"missing video", []string{"process", filepath.Join(outDir, "none.mp4"), "-o", out, "--model", model}, "none.mp4"},
		{"too many threads", []string{"process", video, "-o", out, "--model", model, "--threads", "100000"}, "100000"},
		{"threshold not a number", []string{"process", video, "-o", out, "--model", model, "--threshold", "NaN"}, "NaN"},
		{"output is the model", []string{"process", video, "-o", model, "--model", model}, "is the model"},
		{"output not mp4", []string{"process", video, "-o", filepath.Join(outDir, "q.avi"), "--model", model}, ".mp4"},
		{"crf out of range", []string{"process", video, "-o", out, "--model", model, "--crf", "99"}, "--crf"},
		{"keyframe interval zero", []string{"process", video, "-o", out, "--model", model, "--keyframe-interval", "0"}, "--keyframe-interval"},
		{"flow scale zero", []string{"process", video, "-o", out, "--model", model, "--flow-scale", "0"}, "--flow-scale"},
		{"unknown preset", []string{"process", video, "-o", out, "--model", model, "--preset", "bogus"}, "ultrafast"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := runCommand(t, c.args...)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), c.message) {
				t.Errorf("error %q does not mention %q", err, c.message)
			}
			if _, statErr := os.Stat(out); !os.IsNotExist(statErr) {
				t.Errorf("a failed run left %s", out)
			}
			if leftovers, _ := filepath.Glob(filepath.Join(outDir, ".*")); len(leftovers) != 0 {
				t.Errorf("a failed run left %v", leftovers)
			}
		})
	}

	after, _ := os.ReadFile(video)
	if !bytes.Equal(before, after) {
		t.Error("the input video changed")
	}
}

func synthMask(width, height int) *image.Gray {
	mask := image.NewGray(image.Rect(0, 0, width, height))
	for i := range mask.Pix[:len(mask.Pix)/2] {
		mask.Pix[i] = 255
	}
	return mask
}
