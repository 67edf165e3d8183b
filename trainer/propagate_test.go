package trainer

import (
	"context"
	"errors"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/segment"
)

// endoDataDir is the shared folder of real endoscopy clips, as seen from
// this package's folder. Its terms forbid copying it into the repository.
const endoDataDir = "../../shared/data/endo"

// endoClip returns the folder of a clip under the endoscopy data folder,
// such as "segcol/Seq_003_35920", and fails the test when it is missing.
func endoClip(tb testing.TB, rel string) string {
	tb.Helper()
	path := filepath.Join(endoDataDir, rel)
	if _, err := os.Stat(filepath.Join(path, "frames")); err != nil {
		tb.Fatalf("endoscopy test data missing: %v; these tests read real clips from %s next to the repository (shared/data/endo)",
			err, endoDataDir)
	}
	return path
}

// propagateEndo propagates the GT masks of the given frame numbers of an
// endoscopy clip into out.
func propagateEndo(t *testing.T, clip, out string, numbers []int, o PropagateOptions) *Propagation {
	t.Helper()
	dir := endoClip(t, clip)
	prop, err := Propagate(context.Background(), filepath.Join(dir, "frames"),
		SeedSource{Dir: filepath.Join(dir, "masks"), Numbers: numbers}, out, o)
	if err != nil {
		t.Fatalf("propagate %s from frames %v: %v", clip, numbers, err)
	}
	return prop
}

// iouAgainstGT returns the IoU of every pseudo-label in out against the GT
// of clip, by frame name.
func iouAgainstGT(t *testing.T, clip, out string, prop *Propagation) map[string]float64 {
	t.Helper()
	dir := endoClip(t, clip)
	scores := map[string]float64{}
	for _, r := range prop.Frames {
		pred, err := codec.ReadGray(filepath.Join(out, "pseudo", "masks", r.Frame))
		if err != nil {
			t.Fatal(err)
		}
		gt, _, err := segment.ReadMask(filepath.Join(dir, "masks", r.Frame))
		if err != nil {
			t.Fatal(err)
		}
		iou, err := segment.IoU(pred, gt)
		if err != nil {
			t.Fatal(err)
		}
		scores[r.Frame] = iou
	}
	return scores
}

// Bounds on the IoU against GT of single-seed forward propagation. The
// research tool scores about 0.98 on Seq_003_35920, where the tool barely
// moves, and 0.84 on Seq_015_42000, whose snare moves more. medvseg's
// defaults score about the same (docs/results.md). Warping by the flow in
// the wrong direction (t to t+1) scores 0.59 on Seq_015_42000, so that
// bound catches it; the margins leave room for other OpenCV versions.
var oneSeedMinIoU = map[string]float64{
	"segcol/Seq_003_35920": 0.93,
	"segcol/Seq_015_42000": 0.75,
}

func TestPropagateOneSeedForward(t *testing.T) {
	for clip, bound := range oneSeedMinIoU {
		t.Run(filepath.Base(clip), func(t *testing.T) {
			out := t.TempDir()
			prop := propagateEndo(t, clip, out, []int{0}, PropagateOptions{})
			scores := iouAgainstGT(t, clip, out, prop)

			if len(prop.Frames) != 10 {
				t.Fatalf("records: got %d, want 10", len(prop.Frames))
			}
			mean := 0.0
			for _, r := range prop.Frames[1:] {
				if r.Seed || len(r.Sources) != 1 || r.Sources[0].Seed != 0 {
					t.Errorf("%s: record %+v, want one source, seed 0", r.Frame, r)
				}
				mean += scores[r.Frame] / 9
			}
			if mean < bound {
				t.Errorf("mean IoU %.3f against GT over the non-seed frames, want at least %.2f", mean, bound)
			}
			if !prop.Frames[0].Seed || scores["frame_0000.png"] != 1 {
				t.Errorf("seed frame: record %+v, IoU %.3f; want the seed unchanged", prop.Frames[0], scores["frame_0000.png"])
			}
		})
	}
}

func TestPropagateBackwardFromLastFrame(t *testing.T) {
	out := t.TempDir()
	clip := "segcol/Seq_003_35920"
	prop := propagateEndo(t, clip, out, []int{9}, PropagateOptions{})
	scores := iouAgainstGT(t, clip, out, prop)

	for _, r := range prop.Frames[:9] {
		if len(r.Sources) != 1 || r.Sources[0].Seed != 9 || r.Sources[0].Distance != 9-r.Number {
			t.Errorf("%s: sources %+v, want seed 9 at distance %d", r.Frame, r.Sources, 9-r.Number)
		}
		if bound := oneSeedMinIoU[clip]; scores[r.Frame] < bound {
			t.Errorf("%s: IoU %.3f against GT, want at least %.2f", r.Frame, scores[r.Frame], bound)
		}
	}
}

func TestPropagateSeedInMiddle(t *testing.T) {
	out := t.TempDir()
	clip := "segcol/Seq_003_59280"
	prop := propagateEndo(t, clip, out, []int{5}, PropagateOptions{})
	scores := iouAgainstGT(t, clip, out, prop)

	for _, r := range prop.Frames {
		if r.Number == 5 {
			if !r.Seed {
				t.Errorf("frame 5: not marked as seed")
			}
			continue
		}
		if len(r.Sources) != 1 || r.Sources[0].Seed != 5 {
			t.Errorf("%s: sources %+v, want seed 5 only", r.Frame, r.Sources)
		}
		// The research tool scores 0.93 to 0.98 on this clip forward from frame 0.
		if scores[r.Frame] < 0.85 {
			t.Errorf("%s: IoU %.3f against GT, want at least 0.85", r.Frame, scores[r.Frame])
		}
	}
}

func TestPropagateThreeSeedsFuses(t *testing.T) {
	out := t.TempDir()
	clip := "cvc/seq01"
	three := propagateEndo(t, clip, out, []int{1, 13, 25}, PropagateOptions{})
	threeScores := iouAgainstGT(t, clip, out, three)

	oneOut := t.TempDir()
	one := propagateEndo(t, clip, oneOut, []int{1}, PropagateOptions{})
	oneScores := iouAgainstGT(t, clip, oneOut, one)

	var meanThree, meanOne float64
	n := 0
	for _, r := range three.Frames {
		if r.Seed {
			if r.Number != 1 && r.Number != 13 && r.Number != 25 {
				t.Errorf("%s: marked as seed", r.Frame)
			}
			continue
		}
		if len(r.Sources) != 2 {
			t.Errorf("%s: %d sources, want 2 (the seeds on both sides)", r.Frame, len(r.Sources))
			continue
		}
		if sum := r.Sources[0].Weight + r.Sources[1].Weight; sum < 0.999 || sum > 1.001 {
			t.Errorf("%s: weights sum to %v, want 1", r.Frame, sum)
		}
		// The nearer seed weighs more.
		a, b := r.Sources[0], r.Sources[1]
		if (a.Distance < b.Distance) != (a.Weight > b.Weight) && a.Distance != b.Distance {
			t.Errorf("%s: sources %+v: the nearer seed should weigh more", r.Frame, r.Sources)
		}
		meanThree += threeScores[r.Frame]
		meanOne += oneScores[r.Frame]
		n++
	}
	meanThree /= float64(n)
	meanOne /= float64(n)
	// The GT of this clip changes fast: between some consecutive frames its
	// IoU is below 0.2. The research tool's single forward seed reaches
	// about 0.50 on all 24 frames after the seed. On these 22 frames, three
	// seeds measured 0.51 and one seed 0.40.
	if meanThree < 0.45 {
		t.Errorf("three seeds: mean IoU %.3f over the non-seed frames, want at least 0.45", meanThree)
	}
	if meanThree < meanOne+0.05 {
		t.Errorf("three seeds: mean IoU %.3f, want at least 0.05 above one seed's %.3f on the same frames", meanThree, meanOne)
	}
}

func TestPropagateKeepFlowsReused(t *testing.T) {
	out := t.TempDir()
	clip := "cvc/seq06"
	propagateEndo(t, clip, out, []int{104}, PropagateOptions{KeepFlows: true, Flow: segment.FlowOptions{Scale: 0.5}})

	index := filepath.Join(out, "flows", flowIndexName)
	before, err := os.Stat(index)
	if err != nil {
		t.Fatalf("--keep-flows: %v", err)
	}
	flows, _ := filepath.Glob(filepath.Join(out, "flows", "*.flo"))
	if want := 2 * 22; len(flows) != want {
		t.Errorf("kept flows: got %d files, want %d (both directions of 22 frame pairs)", len(flows), want)
	}
	var flow segment.FlowField
	defer flow.Close()
	if err := readFlo(flows[0], 192, 144, &flow); err != nil {
		t.Errorf("kept flow at the flow resolution 192x144: %v", err)
	}

	propagateEndo(t, clip, out, []int{104, 126}, PropagateOptions{Flow: segment.FlowOptions{Scale: 0.5}})
	after, err := os.Stat(index)
	if err != nil {
		t.Fatal(err)
	}
	if !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("second run rewrote %s: want the kept flows reused", index)
	}
	leftovers, _ := filepath.Glob(filepath.Join(out, ".*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left in the run folder: %v", leftovers)
	}
}

// writeMask writes a mask PNG of the given size with a white rectangle.
func writeMask(t *testing.T, path string, width, height int, r image.Rectangle) {
	t.Helper()
	mask := image.NewGray(image.Rect(0, 0, width, height))
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			mask.SetGray(x, y, color.Gray{Y: 255})
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := codec.WriteGray(path, mask); err != nil {
		t.Fatal(err)
	}
}

func TestPropagateBadSeeds(t *testing.T) {
	frames := filepath.Join(endoClip(t, "cvc/seq01"), "frames") // 384x288, frames 0001-0025
	lesion := image.Rect(100, 100, 200, 180)
	tests := []struct {
		name  string
		write func(t *testing.T, dir string)
		want  []string
	}{
		{"size differs", func(t *testing.T, dir string) {
			writeMask(t, filepath.Join(dir, "0001.png"), 192, 144, image.Rect(50, 50, 100, 90))
		}, []string{"192x144", "384x288", "--resize"}},
		{"number matches no frame", func(t *testing.T, dir string) {
			writeMask(t, filepath.Join(dir, "0099.png"), 384, 288, lesion)
		}, []string{"number 99", "0001.png", "0025.png"}},
		{"all black", func(t *testing.T, dir string) {
			writeMask(t, filepath.Join(dir, "0001.png"), 384, 288, image.Rectangle{})
		}, []string{"all black"}},
		{"all white", func(t *testing.T, dir string) {
			writeMask(t, filepath.Join(dir, "0001.png"), 384, 288, image.Rect(0, 0, 384, 288))
		}, []string{"all white", "inverted"}},
		{"no number in name", func(t *testing.T, dir string) {
			writeMask(t, filepath.Join(dir, "lesion.png"), 384, 288, lesion)
		}, []string{"no frame number"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seeds := t.TempDir()
			tc.write(t, seeds)
			_, err := Propagate(context.Background(), frames, SeedSource{Dir: seeds}, t.TempDir(), PropagateOptions{})
			if err == nil {
				t.Fatal("propagate: no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestPropagateResizesSeed(t *testing.T) {
	frames := filepath.Join(endoClip(t, "cvc/seq01"), "frames")
	seeds := t.TempDir()
	writeMask(t, filepath.Join(seeds, "0001.png"), 192, 144, image.Rect(50, 50, 100, 90))

	out := t.TempDir()
	prop, err := Propagate(context.Background(), frames, SeedSource{Dir: seeds}, out, PropagateOptions{ResizeSeeds: true})
	if err != nil {
		t.Fatalf("propagate with resized seed: %v", err)
	}
	if !prop.Seeds[0].Resized {
		t.Errorf("seed not marked as resized")
	}
	// Nearest-neighbour doubling turns 50x40 into exactly 100x80.
	if got := prop.Frames[0].Area; got != 100*80 {
		t.Errorf("resized seed area: got %d, want %d", got, 100*80)
	}
}

func TestPropagateReadsSoftAndColourSeeds(t *testing.T) {
	frames := filepath.Join(endoClip(t, "cvc/seq01"), "frames")
	seeds := t.TempDir()

	// A red lesion on an RGB image, with a grey anti-aliased rim.
	img := image.NewRGBA(image.Rect(0, 0, 384, 288))
	for y := 100; y < 180; y++ {
		for x := 100; x < 200; x++ {
			img.Set(x, y, color.RGBA{R: 255, A: 255})
		}
	}
	for x := 100; x < 200; x++ {
		img.Set(x, 99, color.RGBA{R: 100, A: 255})
	}
	file, err := os.Create(filepath.Join(seeds, "0001.png"))
	if err != nil {
		t.Fatal(err)
	}
	if err := png.Encode(file, img); err != nil {
		t.Fatal(err)
	}
	file.Close()

	prop, err := Propagate(context.Background(), frames, SeedSource{Dir: seeds}, t.TempDir(), PropagateOptions{})
	if err != nil {
		t.Fatalf("propagate from an RGB seed: %v", err)
	}
	if got := prop.Seeds[0].AmbiguousPixels; got != 100 {
		t.Errorf("ambiguous pixels: got %d, want 100 (the grey rim)", got)
	}
	if got := prop.Frames[0].Area; got != 100*80 {
		t.Errorf("seed area: got %d, want %d (red is lesion, the dark rim is not)", got, 100*80)
	}
}

func TestPropagateEmptyAfterWarp(t *testing.T) {
	frames := filepath.Join(endoClip(t, "cvc/seq01"), "frames")
	// At flow scale 0.25 a 2x2 seed becomes at most 0.25 in one pixel of
	// the map, and warping and resizing never raise a maximum, so nothing
	// propagated reaches the 0.5 threshold.
	tiny := image.Rect(150, 150, 152, 152)
	quarter := PropagateOptions{Flow: segment.FlowOptions{Scale: 0.25}}

	t.Run("every frame empty", func(t *testing.T) {
		seeds := t.TempDir()
		writeMask(t, filepath.Join(seeds, "0001.png"), 384, 288, tiny)
		_, err := Propagate(context.Background(), frames, SeedSource{Dir: seeds}, t.TempDir(), quarter)
		if err == nil {
			t.Fatal("propagate: no error")
		}
		for _, w := range []string{"every propagated pseudo-label is empty", "0002.png to 0025.png"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not mention %q", err, w)
			}
		}
	})

	t.Run("some frames empty", func(t *testing.T) {
		seeds := t.TempDir()
		writeMask(t, filepath.Join(seeds, "0001.png"), 384, 288, tiny)
		writeMask(t, filepath.Join(seeds, "0025.png"), 384, 288, image.Rect(80, 60, 300, 240))
		prop, err := Propagate(context.Background(), frames, SeedSource{Dir: seeds}, t.TempDir(), quarter)
		if err != nil {
			t.Fatalf("propagate: %v", err)
		}
		if len(prop.EmptyFrames) == 0 || prop.EmptyFrames[0] != "0002.png" {
			t.Errorf("empty frames: got %v, want a run starting at 0002.png, next to the tiny seed", prop.EmptyFrames)
		}
		if len(prop.EmptyFrames) >= 23 {
			t.Errorf("empty frames: got %d, want the frames near the large seed filled", len(prop.EmptyFrames))
		}
	})
}

func TestPropagateFailureKeepsEarlierOutput(t *testing.T) {
	clip := endoClip(t, "cvc/seq13")
	out := t.TempDir()
	propagateEndo(t, "cvc/seq13", out, []int{253}, PropagateOptions{Flow: segment.FlowOptions{Scale: 0.5}})
	masks := filepath.Join(out, "pseudo", "masks", "0260.png")
	before, err := os.ReadFile(masks)
	if err != nil {
		t.Fatal(err)
	}
	record, err := os.ReadFile(filepath.Join(out, "pseudo", "propagation.json"))
	if err != nil {
		t.Fatal(err)
	}

	seeds := t.TempDir()
	writeMask(t, filepath.Join(seeds, "0253.png"), 384, 288, image.Rectangle{})
	_, err = Propagate(context.Background(), filepath.Join(clip, "frames"), SeedSource{Dir: seeds}, out, PropagateOptions{})
	if err == nil {
		t.Fatal("propagate from an all-black seed: no error")
	}

	after, err := os.ReadFile(masks)
	if err != nil || string(after) != string(before) {
		t.Errorf("pseudo-label changed or lost after a failed run: %v", err)
	}
	recordAfter, err := os.ReadFile(filepath.Join(out, "pseudo", "propagation.json"))
	if err != nil || string(recordAfter) != string(record) {
		t.Errorf("propagation record changed or lost after a failed run: %v", err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(out, "*", ".*"))
	more, _ := filepath.Glob(filepath.Join(out, ".*"))
	if len(leftovers)+len(more) != 0 {
		t.Errorf("temporary files left: %v %v", leftovers, more)
	}
}

func TestClipFoldersWrongLevel(t *testing.T) {
	root := filepath.Dir(endoClip(t, "cvc/seq01"))
	tests := []struct {
		name string
		dir  string
		want []string
	}{
		{"root of clips", root, []string{"one level too high", "seq01", filepath.Join(root, "seq01")}},
		{"frames folder", filepath.Join(root, "seq01", "frames"), []string{"one level too low", filepath.Join(root, "seq01")}},
		{"masks folder", filepath.Join(root, "seq01", "masks"), []string{"one level too low", filepath.Join(root, "seq01")}},
		{"no frames", t.TempDir(), []string{"has no frames folder"}},
		{"missing", filepath.Join(t.TempDir(), "nope"), []string{"no such file"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ClipFolders(tc.dir)
			if err == nil {
				t.Fatalf("ClipFolders(%q): no error", tc.dir)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}

	frames, masks, err := ClipFolders(filepath.Join(root, "seq01"))
	if err != nil || frames != filepath.Join(root, "seq01", "frames") || masks != filepath.Join(root, "seq01", "masks") {
		t.Errorf("ClipFolders(seq01) = %q, %q, %v; want its frames and masks folders", frames, masks, err)
	}
}

func TestPropagateCancelled(t *testing.T) {
	dir := endoClip(t, "cvc/seq01")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Propagate(ctx, filepath.Join(dir, "frames"), SeedSource{Dir: filepath.Join(dir, "masks"), Numbers: []int{1}},
		t.TempDir(), PropagateOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled propagate: got %v, want context.Canceled", err)
	}
}

func TestPropagateChecksOptionsFirst(t *testing.T) {
	out := t.TempDir()
	for _, o := range []PropagateOptions{{Threshold: math.NaN()}, {ConsistencyThreshold: -1}} {
		_, err := Propagate(context.Background(), filepath.Join(out, "no-frames"), SeedSource{Dir: out}, out, o)
		if err == nil || !strings.Contains(err.Error(), "invalid") {
			t.Errorf("options %+v: error %v, expected the invalid option named before the frames are read", o, err)
		}
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("a rejected run left %d entries in its output folder", len(entries))
	}
}
