package trainer

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
)

func TestEpochOrder(t *testing.T) {
	cases := []struct {
		name               string
		n, batch, minSteps int
		wantLength         int
		onePass            bool
	}{
		{"no minimum", 5, 2, 0, 5, true},
		{"minimum of one step", 5, 2, 1, 5, true},
		{"tiny set repeated", 3, 4, 5, 20, false},
		{"repeat cut mid-pass", 8, 8, 3, 24, false},
		{"one pass makes the minimum", 9, 2, 5, 9, true},
		{"one frame short of the minimum", 8, 2, 5, 10, false},
		{"long set", 100, 8, 8, 100, true},
		{"no frames", 0, 8, 8, 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			order := epochOrder(epochRandom(1, 1), c.n, c.batch, c.minSteps)
			if len(order) != c.wantLength {
				t.Fatalf("%d frames, batch %d, minimum %d steps: order of %d, want %d",
					c.n, c.batch, c.minSteps, len(order), c.wantLength)
			}

			// Every pass but a cut last one is a permutation of all frames,
			// and the cut one repeats no frame.
			for start := 0; start < len(order); start += c.n {
				pass := order[start:min(start+c.n, len(order))]
				distinct := slices.Compact(slices.Sorted(slices.Values(pass)))
				if len(distinct) != len(pass) {
					t.Errorf("pass at %d, %v, repeats a frame", start, pass)
				}
				if distinct[0] < 0 || distinct[len(distinct)-1] >= c.n {
					t.Errorf("pass at %d, %v, has an index outside 0..%d", start, pass, c.n-1)
				}
			}

			want := epochRandom(1, 1).Perm(c.n)
			if c.onePass && !slices.Equal(order, want) {
				t.Errorf("one-pass order %v differs from the permutation without a minimum %v", order, want)
			}
		})
	}
}

// TestTrainMinStepsPerEpoch trains one epoch at 32x32 on synth clips of a few
// frames and counts the steps that Train reports.
func TestTrainMinStepsPerEpoch(t *testing.T) {
	cases := []struct {
		name      string
		frames    int
		minSteps  int
		wantSteps int
	}{
		{"tiny set raised to the minimum", 4, 5, 5},
		{"no minimum, one pass", 4, 0, 2},
		{"one pass just makes the minimum", 9, 5, 5},
		{"large set, one pass", 14, 5, 7},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := DefaultTrainOptions
			o.Data = t.TempDir()
			writeSynthClip(t, o.Data, c.frames, 64)
			o.Out = filepath.Join(t.TempDir(), "run")
			o.Epochs = 1
			o.InputSize = 32
			o.BatchSize = 2
			o.ValFraction = 0
			o.Threads = 1
			o.MinStepsPerEpoch = c.minSteps

			progressCalls := 0
			reported := 0
			o.Progress = func(p TrainProgress) {
				progressCalls++
				reported = p.Steps
			}
			history, err := Train(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}

			if progressCalls != c.wantSteps {
				t.Errorf("%d frames, minimum %d: %d steps ran, want %d", c.frames, c.minSteps, progressCalls, c.wantSteps)
			}
			if reported != c.wantSteps {
				t.Errorf("%d frames, minimum %d: progress reports %d steps an epoch, want %d",
					c.frames, c.minSteps, reported, c.wantSteps)
			}
			if got := history.Epochs[0].Steps; got != c.wantSteps {
				t.Errorf("%d frames, minimum %d: history records %d steps, want %d", c.frames, c.minSteps, got, c.wantSteps)
			}
		})
	}
}
