package trainer

import (
	"image"
	"math"
	"path/filepath"
	"strings"
	"testing"
)

func TestEvaluateKnownMasks(t *testing.T) {
	pred, gt := t.TempDir(), t.TempDir()
	square := image.Rect(20, 20, 40, 40)
	// Frame 1: identical. Frame 2: shifted by 10 of 20 pixels, so the
	// overlap is 200 of 400 px: IoU 200/600, Dice 400/800.
	writeMask(t, filepath.Join(pred, "0001.png"), 64, 64, square)
	writeMask(t, filepath.Join(gt, "frame_0001.png"), 64, 64, square)
	writeMask(t, filepath.Join(pred, "0002.png"), 64, 64, square.Add(image.Pt(10, 0)))
	writeMask(t, filepath.Join(gt, "frame_0002.png"), 64, 64, square)
	// Frame 3: ground truth only. Frame 9: prediction only.
	writeMask(t, filepath.Join(gt, "frame_0003.png"), 64, 64, square)
	writeMask(t, filepath.Join(pred, "0009.png"), 64, 64, square)

	e, err := Evaluate(pred, gt)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Frames) != 2 {
		t.Fatalf("scored frames: got %d, want 2", len(e.Frames))
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	checks := []struct {
		name      string
		got, want float64
	}{
		{"frame 1 IoU", e.Frames[0].IoU, 1},
		{"frame 1 Dice", e.Frames[0].Dice, 1},
		{"frame 1 boundary F", e.Frames[0].BoundaryF, 1},
		{"frame 2 IoU", e.Frames[1].IoU, 1.0 / 3},
		{"frame 2 Dice", e.Frames[1].Dice, 0.5},
		{"mean IoU", e.Mean.IoU, (1 + 1.0/3) / 2},
		{"mean Dice", e.Mean.Dice, 0.75},
	}
	for _, c := range checks {
		if !near(c.got, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
	// A 10 px shift is beyond the DAVIS tolerance of ceil(0.008 * 90.5) = 1 px
	// for the two vertical edges, which are half of each boundary.
	if f := e.Frames[1].BoundaryF; f <= 0 || f >= 0.7 {
		t.Errorf("frame 2 boundary F: got %v, want between 0 and 0.7", f)
	}
	if len(e.MissingPred) != 1 || e.MissingPred[0] != 3 {
		t.Errorf("missing predictions: got %v, want [3]", e.MissingPred)
	}
	if e.UnmatchedPred != 1 {
		t.Errorf("unmatched predictions: got %d, want 1", e.UnmatchedPred)
	}
}

func TestEvaluateBadInput(t *testing.T) {
	t.Run("size differs", func(t *testing.T) {
		pred, gt := t.TempDir(), t.TempDir()
		writeMask(t, filepath.Join(pred, "0001.png"), 32, 32, image.Rect(0, 0, 8, 8))
		writeMask(t, filepath.Join(gt, "0001.png"), 64, 64, image.Rect(0, 0, 8, 8))
		_, err := Evaluate(pred, gt)
		if err == nil || !strings.Contains(err.Error(), "32x32") || !strings.Contains(err.Error(), "64x64") {
			t.Errorf("got %v, want an error naming both sizes", err)
		}
	})
	t.Run("no matching number", func(t *testing.T) {
		pred, gt := t.TempDir(), t.TempDir()
		writeMask(t, filepath.Join(pred, "0001.png"), 32, 32, image.Rect(0, 0, 8, 8))
		writeMask(t, filepath.Join(gt, "0002.png"), 32, 32, image.Rect(0, 0, 8, 8))
		_, err := Evaluate(pred, gt)
		if err == nil || !strings.Contains(err.Error(), "matched by the number") {
			t.Errorf("got %v, want an error about matching frame numbers", err)
		}
	})
}
