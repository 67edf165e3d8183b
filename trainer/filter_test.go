package trainer

import (
	"context"
	"encoding/json"
	"errors"
	"image"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/segment"
)

// shiftMask returns mask moved right by dx pixels.
func shiftMask(mask *image.Gray, dx int) *image.Gray {
	w, h := mask.Rect.Dx(), mask.Rect.Dy()
	out := image.NewGray(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x+dx < w; x++ {
			out.Pix[y*w+x+dx] = mask.Pix[y*mask.Stride+x]
		}
	}
	return out
}

func TestFilterDropsCorruptedFrames(t *testing.T) {
	out := t.TempDir()
	propagateEndo(t, "cvc/seq01", out, []int{1, 13, 25}, PropagateOptions{KeepFlows: true})
	pseudo := filepath.Join(out, "pseudo", "masks")

	// Frame 7: the lesion moved 150 pixels away. Frame 19: empty.
	mask, err := codec.ReadGray(filepath.Join(pseudo, "0007.png"))
	if err != nil {
		t.Fatal(err)
	}
	if err := codec.WriteGray(filepath.Join(pseudo, "0007.png"), shiftMask(mask, 150)); err != nil {
		t.Fatal(err)
	}
	if err := codec.WriteGray(filepath.Join(pseudo, "0019.png"), image.NewGray(mask.Rect)); err != nil {
		t.Fatal(err)
	}

	report, err := Filter(context.Background(), out, DefaultFilterOptions)
	if err != nil {
		t.Fatalf("filter: %v", err)
	}
	dropped := map[string]FilterDecision{}
	for _, d := range report.Frames {
		if !d.Kept {
			dropped[d.Frame] = d
		}
		if d.Seed && !d.Kept {
			t.Errorf("%s: seed frame dropped", d.Frame)
		}
	}
	for _, name := range []string{"0007.png", "0019.png"} {
		d, ok := dropped[name]
		if !ok {
			t.Errorf("%s: corrupted pseudo-label kept", name)
			continue
		}
		if len(d.Reasons) == 0 {
			t.Errorf("%s: dropped without a reason", name)
		}
		if _, err := os.Stat(filepath.Join(out, "pseudo", "dropped", name)); err != nil {
			t.Errorf("%s: not in pseudo/dropped: %v", name, err)
		}
		if _, err := os.Stat(filepath.Join(out, "filtered", "masks", name)); !os.IsNotExist(err) {
			t.Errorf("%s: in filtered/masks, want it left out", name)
		}
	}
	if !strings.Contains(strings.Join(dropped["0019.png"].Reasons, "; "), "area 0 px") {
		t.Errorf("0019.png: reasons %v, want the minimum area", dropped["0019.png"].Reasons)
	}
	// The neighbours of a corrupted frame agree with their other neighbour.
	for _, name := range []string{"0006.png", "0008.png", "0018.png", "0020.png"} {
		if d, ok := dropped[name]; ok {
			t.Errorf("%s: dropped (%v), want only the corrupted frames dropped", name, d.Reasons)
		}
	}
	if report.Kept+report.Dropped != 25 {
		t.Errorf("kept %d + dropped %d, want 25 frames", report.Kept, report.Dropped)
	}

	frames, _ := filepath.Glob(filepath.Join(out, "filtered", "frames", "*.png"))
	masks, _ := filepath.Glob(filepath.Join(out, "filtered", "masks", "*.png"))
	if len(frames) != report.Kept || len(masks) != report.Kept {
		t.Errorf("filtered: %d frames and %d masks, want %d of each", len(frames), len(masks), report.Kept)
	}
	data, err := os.ReadFile(filepath.Join(out, "filtered", "filter.json"))
	if err != nil {
		t.Fatal(err)
	}
	var written FilterReport
	if err := json.Unmarshal(data, &written); err != nil || written.Dropped != report.Dropped {
		t.Errorf("filter.json: dropped %d, error %v; want %d", written.Dropped, err, report.Dropped)
	}
}

func TestFilterRemovesSmallComponents(t *testing.T) {
	mask := image.NewGray(image.Rect(0, 0, 64, 48))
	for y := 10; y < 30; y++ {
		for x := 10; x < 30; x++ {
			mask.Pix[y*64+x] = 255
		}
	}
	for y := 40; y < 43; y++ {
		for x := 50; x < 53; x++ {
			mask.Pix[y*64+x] = 255
		}
	}
	removed, err := removeSmallComponents(mask, 10)
	if err != nil {
		t.Fatal(err)
	}
	if removed != 9 {
		t.Errorf("removed %d pixels, want the 9 of the 3x3 speck", removed)
	}
	if got := countForeground(mask); got != 400 {
		t.Errorf("area after cleanup: got %d, want the 400 of the 20x20 square", got)
	}
}

func TestFilterNothingKept(t *testing.T) {
	out := t.TempDir()
	propagateEndo(t, "cvc/seq06", out, []int{104}, PropagateOptions{KeepFlows: true, Flow: segment.FlowOptions{Scale: 0.5}})
	if _, err := Filter(context.Background(), out, DefaultFilterOptions); err != nil {
		t.Fatalf("first filter: %v", err)
	}
	record := filepath.Join(out, "filtered", "filter.json")
	before, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}

	o := DefaultFilterOptions
	o.MinArea = 384 * 288 // no pseudo-label fills the frame
	_, err = Filter(context.Background(), out, o)
	if !errors.Is(err, ErrNothingKept) {
		t.Fatalf("filter with an impossible --min-area: got %v, want ErrNothingKept", err)
	}
	for _, w := range []string{"min", "quartiles", "max", "try --iou-th", "below --min-area"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}

	after, err := os.ReadFile(record)
	if err != nil || string(after) != string(before) {
		t.Errorf("filter.json changed or lost after a failed run: %v", err)
	}
}

func TestFilterWithoutPropagation(t *testing.T) {
	_, err := Filter(context.Background(), t.TempDir(), DefaultFilterOptions)
	if err == nil || !strings.Contains(err.Error(), "run medvseg propagate") {
		t.Errorf("filter on an empty folder: got %v, want an error that says to run propagate first", err)
	}
}
