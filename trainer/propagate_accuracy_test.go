//go:build accuracy

package trainer

import (
	"context"
	"fmt"
	"image"
	"path/filepath"
	"strings"
	"testing"

	"gocv.io/x/gocv"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/segment"
)

// TestPropagationAccuracy compares the research tool's propagation with
// medvseg's on the real clips and logs a markdown table of mean IoU against
// GT over the non-seed frames. Run it with
//
//	go test -tags accuracy ./trainer/ -run TestPropagationAccuracy -v
//
// It asserts only loose sanity bounds.
func TestPropagationAccuracy(t *testing.T) {
	clips := []string{
		"segcol/Seq_003_35920", "segcol/Seq_003_59280", "segcol/Seq_015_42000",
		"cvc/seq01", "cvc/seq06", "cvc/seq13",
	}
	var rows []string
	for _, name := range clips {
		r := measureClip(t, name)
		rows = append(rows, fmt.Sprintf("| %s | %d | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.2f (%d/%d) |",
			name, r.frames, r.research, r.research512, r.researchWrong, r.oneSeed, r.oneSeedFarneback,
			r.threeSeeds, r.threeSeedsKept, r.keptFraction, r.kept, r.propagated))

		if strings.HasPrefix(name, "segcol/Seq_003_35920") {
			if r.research < 0.9 {
				t.Errorf("%s: research method mean IoU %.3f, want about 0.98", name, r.research)
			}
			if r.oneSeed < 0.9 {
				t.Errorf("%s: medvseg one seed mean IoU %.3f, want at least 0.9", name, r.oneSeed)
			}
		}
		if r.threeSeeds < r.oneSeed-0.05 {
			t.Errorf("%s: three seeds mean IoU %.3f, want no worse than one seed's %.3f", name, r.threeSeeds, r.oneSeed)
		}
	}

	t.Logf("\n| clip | frames | (a) research | (a) scored at 512x512 | (a) flow t->t+1 | (b) medvseg, 1 seed | (b) with --flow farneback | (c) 3 seeds | (d) 3 seeds, filtered | (d) kept |\n|---|---|---|---|---|---|---|---|---|---|\n%s",
		strings.Join(rows, "\n"))
}

type clipAccuracy struct {
	frames                               int
	research, research512, researchWrong float64
	oneSeed, oneSeedFarneback            float64
	threeSeeds, threeSeedsKept           float64
	kept, propagated                     int
	keptFraction                         float64
}

func measureClip(t *testing.T, name string) clipAccuracy {
	dir := endoClip(t, name)
	clip, err := OpenClip(filepath.Join(dir, "frames"))
	if err != nil {
		t.Fatal(err)
	}
	n := len(clip.Frames)
	gt := make([]*image.Gray, n)
	for i, f := range clip.Frames {
		if gt[i], _, err = segment.ReadMask(filepath.Join(dir, "masks", f.Name)); err != nil {
			t.Fatal(err)
		}
	}
	r := clipAccuracy{frames: n}
	r.research, r.research512 = researchPropagation(t, clip, gt, false)
	r.researchWrong, _ = researchPropagation(t, clip, gt, true)

	flows, err := computeFlows(context.Background(), clip, DefaultPropagateOptions.Flow, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	first, middle, last := clip.Frames[0].Number, clip.Frames[n/2].Number, clip.Frames[n-1].Number
	one, _ := medvsegPropagation(t, clip, dir, flows, gt, []int{first})
	r.oneSeed = meanIoU(one)

	farneback, err := computeFlows(context.Background(), clip, segment.FlowOptions{Method: segment.FlowFarneback, Scale: 1},
		t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	oneFarneback, _ := medvsegPropagation(t, clip, dir, farneback, gt, []int{first})
	r.oneSeedFarneback = meanIoU(oneFarneback)
	three, masks := medvsegPropagation(t, clip, dir, flows, gt, []int{first, middle, last})
	r.threeSeeds = meanIoU(three)

	seeds := map[int]bool{0: true, n / 2: true, n - 1: true}
	decisions, err := filterMasks(context.Background(), clip, masks, seeds, flows, DefaultFilterOptions)
	if err != nil {
		t.Fatal(err)
	}
	kept := map[int]bool{}
	for i, d := range decisions {
		if d.Seed {
			continue
		}
		r.propagated++
		if d.Kept {
			kept[i] = true
			r.kept++
		}
	}
	// Filtering cleans the masks in place, so the kept frames are rescored.
	rescored := map[int]float64{}
	for i := range kept {
		if rescored[i], err = segment.IoU(masks[i], gt[i]); err != nil {
			t.Fatal(err)
		}
	}
	r.threeSeedsKept = meanIoU(rescored)
	r.keptFraction = float64(r.kept) / float64(r.propagated)
	return r
}

// meanIoU returns the mean of the scores, NaN when there are none.
func meanIoU(scores map[int]float64) float64 {
	sum := 0.0
	for _, s := range scores {
		sum += s
	}
	return sum / float64(len(scores))
}

// researchPropagation re-implements the research tool's propagation: frames
// resized to 512x512, Farneback with its parameters, one seed on the first
// frame carried forward as a soft map that is never re-thresholded. It
// returns the mean IoU over the non-seed frames, thresholded at 0.5 after
// resizing the map back to the frame size, and thresholded at 512x512
// against the GT resized there with nearest-neighbour interpolation.
// wrongDirection warps by the flow from t to t+1 instead of t+1 to t.
func researchPropagation(t *testing.T, clip *Clip, gt []*image.Gray, wrongDirection bool) (float64, float64) {
	const side = 512
	estimator, err := segment.NewFarnebackFlow(segment.FarnebackResearchParams, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer estimator.Close()
	warper := segment.NewWarper()
	defer warper.Close()
	var flow segment.FlowField
	defer flow.Close()

	width, height := gt[0].Rect.Dx(), gt[0].Rect.Dy()
	seed, err := resizeMask(gt[0], side, side)
	if err != nil {
		t.Fatal(err)
	}
	prob, err := maskToMap(seed, side, side)
	if err != nil {
		t.Fatal(err)
	}
	next := &segment.Map{}
	full := &segment.Map{}
	var mask image.Gray

	prev, cur := &codec.Frame{}, &codec.Frame{}
	frame := &codec.Frame{}
	if err := codec.ReadPNG(clip.Frames[0].Path, frame); err != nil {
		t.Fatal(err)
	}
	if err := resizeFrame(frame, prev, side, side); err != nil {
		t.Fatal(err)
	}

	var sumFull, sum512 float64
	for i := 1; i < len(clip.Frames); i++ {
		if err := codec.ReadPNG(clip.Frames[i].Path, frame); err != nil {
			t.Fatal(err)
		}
		if err := resizeFrame(frame, cur, side, side); err != nil {
			t.Fatal(err)
		}
		from, to := cur, prev
		if wrongDirection {
			from, to = prev, cur
		}
		if err := estimator.Compute(from, to, &flow); err != nil {
			t.Fatal(err)
		}
		if err := warper.WarpMap(prob, &flow, next); err != nil {
			t.Fatal(err)
		}
		prob, next = next, prob
		prev, cur = cur, prev

		if err := resizeMap(prob, full, width, height, gocv.InterpolationLinear); err != nil {
			t.Fatal(err)
		}
		full.Threshold(0.5, &mask)
		iou, err := segment.IoU(&mask, gt[i])
		if err != nil {
			t.Fatal(err)
		}
		sumFull += iou

		gtSmall, err := resizeMask(gt[i], side, side)
		if err != nil {
			t.Fatal(err)
		}
		prob.Threshold(0.5, &mask)
		if iou, err = segment.IoU(&mask, gtSmall); err != nil {
			t.Fatal(err)
		}
		sum512 += iou
	}
	n := float64(len(clip.Frames) - 1)
	return sumFull / n, sum512 / n
}

// medvsegPropagation propagates the GT masks of the given frame numbers with
// the default options and returns the IoU of every non-seed frame by index,
// and every frame's pseudo-label.
func medvsegPropagation(t *testing.T, clip *Clip, dir string, flows *flowStore, gt []*image.Gray,
	numbers []int) (map[int]float64, []*image.Gray) {
	seeds, err := LoadSeeds(clip, SeedSource{Dir: filepath.Join(dir, "masks"), Numbers: numbers}, false)
	if err != nil {
		t.Fatal(err)
	}
	isSeed := map[int]bool{}
	for _, s := range seeds {
		isSeed[s.index] = true
	}
	scores := map[int]float64{}
	masks := make([]*image.Gray, len(clip.Frames))
	_, err = propagateClip(context.Background(), clip, seeds, flows, t.TempDir(), DefaultPropagateOptions,
		func(i int, mask *image.Gray) error {
			masks[i] = &image.Gray{Pix: append([]byte(nil), mask.Pix...), Stride: mask.Stride, Rect: mask.Rect}
			if isSeed[i] {
				return nil
			}
			iou, err := segment.IoU(mask, gt[i])
			scores[i] = iou
			return err
		})
	if err != nil {
		t.Fatal(err)
	}
	return scores, masks
}
