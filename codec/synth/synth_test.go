package synth_test

import (
	"bytes"
	"errors"
	"image"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/codec/synth"
)

func render(t *testing.T, o synth.Options, index int) (*codec.Frame, *image.Gray) {
	t.Helper()
	scene, err := synth.NewScene(o)
	if err != nil {
		t.Fatal(err)
	}
	f := &codec.Frame{}
	mask := scene.Render(index, f, nil)
	return f, mask
}

func lesionArea(mask *image.Gray) int {
	n := 0
	for _, v := range mask.Pix {
		if v == 255 {
			n++
		} else if v != 0 {
			return -1
		}
	}
	return n
}

func TestSceneIsDeterministic(t *testing.T) {
	o := synth.Options{Width: 160, Height: 120, Frames: 40, FPS: 25, RandomSeed: 3}
	for _, index := range []int{0, 17, 39} {
		a, maskA := render(t, o, index)
		b, maskB := render(t, o, index)
		if !bytes.Equal(a.Pix, b.Pix) {
			t.Errorf("frame %d differs between two scenes with random seed 3", index)
		}
		if !bytes.Equal(maskA.Pix, maskB.Pix) {
			t.Errorf("mask %d differs between two scenes with random seed 3", index)
		}
	}

	other := o
	other.RandomSeed = 4
	a, _ := render(t, o, 0)
	b, _ := render(t, other, 0)
	if bytes.Equal(a.Pix, b.Pix) {
		t.Error("random seeds 3 and 4 gave the same first frame")
	}
}

func TestLesionLeavesAndReentersView(t *testing.T) {
	o := synth.Options{Width: 160, Height: 120, Frames: 100, FPS: 25, RandomSeed: 1}
	scene, err := synth.NewScene(o)
	if err != nil {
		t.Fatal(err)
	}

	areas := make([]int, o.Frames)
	f := &codec.Frame{}
	var mask *image.Gray
	for i := range areas {
		mask = scene.Render(i, f, mask)
		areas[i] = lesionArea(mask)
		if areas[i] < 0 {
			t.Fatalf("mask %d has values other than 0 and 255", i)
		}
	}

	if areas[0] == 0 || areas[o.Frames-1] == 0 {
		t.Errorf("lesion area %d in the first frame and %d in the last, expected both visible", areas[0], areas[o.Frames-1])
	}
	if areas[o.Frames/2] != 0 {
		t.Errorf("lesion area %d in the middle frame, expected it out of view", areas[o.Frames/2])
	}

	// The lesion deforms: its area changes by more than 5% over the clip.
	lo, hi := areas[0], areas[0]
	for _, a := range areas[:o.Frames/3] {
		lo, hi = min(lo, a), max(hi, a)
	}
	if float64(hi-lo) < 0.05*float64(hi) {
		t.Errorf("lesion area stays within %d..%d over the first third, expected it to deform", lo, hi)
	}
}

// TestLesionIsRedder checks the colour property that the colour-rule model
// relies on: R - 2G on [0,1] is high inside the lesion and low outside.
func TestLesionIsRedder(t *testing.T) {
	o := synth.Options{Width: 320, Height: 240, Frames: 250, FPS: 25, RandomSeed: 1}
	for _, index := range []int{0, 60, 200} {
		f, mask := render(t, o, index)

		var inside, insideHigh, outside, outsideLow int
		for y := 2; y < o.Height-2; y++ {
			for x := 2; x < o.Width-2; x++ {
				i := y*o.Width + x
				b, g, r := float64(f.Pix[3*i])/255, float64(f.Pix[3*i+1])/255, float64(f.Pix[3*i+2])/255
				score := r - 2*g
				if b > 0.8 && g > 0.8 {
					continue // specular highlight
				}

				if interior(mask, x, y, 2) {
					inside++
					if score > 0.25 {
						insideHigh++
					}
				} else if exterior(mask, x, y, 2) {
					outside++
					if score < 0.1 {
						outsideLow++
					}
				}
			}
		}

		if inside == 0 {
			t.Fatalf("frame %d: no lesion pixels", index)
		}
		if share := float64(insideHigh) / float64(inside); share < 0.99 {
			t.Errorf("frame %d: %.3f of lesion pixels have R-2G > 0.25, expected at least 0.99", index, share)
		}
		if share := float64(outsideLow) / float64(outside); share < 0.999 {
			t.Errorf("frame %d: %.4f of other pixels have R-2G < 0.1, expected at least 0.999", index, share)
		}
	}
}

func interior(mask *image.Gray, x, y, r int) bool {
	for dy := -r; dy <= r; dy++ {
		for dx := -r; dx <= r; dx++ {
			if mask.GrayAt(x+dx, y+dy).Y == 0 {
				return false
			}
		}
	}
	return true
}

func exterior(mask *image.Gray, x, y, r int) bool {
	for dy := -r; dy <= r; dy++ {
		for dx := -r; dx <= r; dx++ {
			if mask.GrayAt(x+dx, y+dy).Y != 0 {
				return false
			}
		}
	}
	return true
}

func TestWriteClip(t *testing.T) {
	dir := t.TempDir()
	o := synth.Options{Width: 128, Height: 96, Frames: 12, FPS: 10, RandomSeed: 2}
	calls := 0
	if err := synth.WriteClip(dir, o, func() { calls++ }); err != nil {
		t.Fatal(err)
	}
	if calls != 12 {
		t.Errorf("progress called %d times, expected 12", calls)
	}

	for _, folder := range []string{"frames", "masks"} {
		entries, err := codec.ListSequence(filepath.Join(dir, folder))
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 12 || filepath.Base(entries[0].Path) != "0001.png" {
			t.Errorf("%s: %d files starting with %v, expected 12 from 0001.png", folder, len(entries), entries[0])
		}
	}

	r, err := codec.Open(filepath.Join(dir, "clip.mp4"), codec.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	n := 0
	for f := (&codec.Frame{}); ; n++ {
		if err := r.Read(f); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if n != 12 {
		t.Errorf("clip.mp4 has %d frames, expected 12", n)
	}

	// The same seed gives byte-identical PNGs.
	again := t.TempDir()
	if err := synth.WriteClip(again, o, nil); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"frames/0005.png", "masks/0012.png"} {
		a, _ := os.ReadFile(filepath.Join(dir, name))
		b, _ := os.ReadFile(filepath.Join(again, name))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s differs between two runs with the same random seed", name)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	bad := []synth.Options{
		{Width: 63, Height: 64, Frames: 1, FPS: 25},
		{Width: 64, Height: 32, Frames: 1, FPS: 25},
		{Width: 64, Height: 64, Frames: 0, FPS: 25},
		{Width: 64, Height: 64, Frames: 1, FPS: 0},
	}
	for _, o := range bad {
		if err := o.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, expected an error", o)
		}
	}
	if err := synth.DefaultOptions.Validate(); err != nil {
		t.Errorf("default options invalid: %v", err)
	}
}

func TestOptionsRejectHugeFrames(t *testing.T) {
	o := synth.Options{Width: 20000, Height: 20000, Frames: 1, FPS: 25}
	if err := o.Validate(); err == nil {
		t.Error("Validate accepted 20000x20000, whose texture needs 24 GiB")
	}
}
