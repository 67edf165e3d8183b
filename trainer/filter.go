package trainer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"time"
	"unsafe"

	"github.com/rs/zerolog/log"
	"gocv.io/x/gocv"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/segment"
)

// FilterOptions configures Filter.
type FilterOptions struct {
	// IoUThreshold is the lowest warp IoU, in [0, 1], of a kept pseudo-label.
	IoUThreshold float64
	// MaxAreaChange is the largest relative area change |a-b| / max(a, b),
	// in [0, 1], from a pseudo-label to the closer in area of its neighbours.
	MaxAreaChange float64
	// MinArea is the smallest kept pseudo-label, in pixels at the frame size.
	MinArea int
	// MinComponent is the smallest connected component, in pixels at the
	// frame size, left in a pseudo-label. 0 keeps every component.
	MinComponent int
	// Progress, if not nil, is called after each unit of work of a stage
	// ("flow": frame pairs, "filter": frames).
	Progress func(stage string, done, total int)
}

// DefaultFilterOptions are the options of medvseg filter.
// NOTE: MinArea and MinComponent are chosen for 640x480 frames, not tuned
// on data.
var DefaultFilterOptions = FilterOptions{
	IoUThreshold:  0.4,
	MaxAreaChange: 0.5,
	MinArea:       100,
	MinComponent:  50,
}

// FilterReport is the record that Filter writes to OUT/filtered/filter.json.
type FilterReport struct {
	IoUThreshold  float64 `json:"iou_threshold"`
	MaxAreaChange float64 `json:"max_area_change"`
	MinArea       int     `json:"min_area"`
	MinComponent  int     `json:"min_component"`
	// Kept and Dropped count the frames.
	Kept    int `json:"kept"`
	Dropped int `json:"dropped"`
	// Frames has one decision per frame, in frame order.
	Frames []FilterDecision `json:"frames"`
}

// FilterDecision records whether a frame's pseudo-label was kept, and why not.
type FilterDecision struct {
	Frame  string `json:"frame"`
	Number int    `json:"number"`
	Seed   bool   `json:"seed"`
	Kept   bool   `json:"kept"`
	// IoU is the warp IoU: the highest, over the frame's neighbours t-1
	// and t+1, of the IoU between this pseudo-label and the neighbour's
	// pseudo-label warped onto this frame.
	IoU float64 `json:"iou"`
	// AreaChange is the lowest, over the neighbours, of |a-b| / max(a, b)
	// for the two pseudo-labels' areas; 0 when both are empty.
	AreaChange float64 `json:"area_change"`
	// Area is the pseudo-label's area in pixels after component cleanup.
	Area int `json:"area"`
	// RemovedPixels counts the pixels of components below MinComponent.
	RemovedPixels int `json:"removed_pixels,omitempty"`
	// Reasons lists why a frame was dropped.
	Reasons []string `json:"reasons,omitempty"`
}

// ErrNothingKept is returned, wrapped, when filtering keeps no propagated
// pseudo-label.
var ErrNothingKept = errors.New("no propagated pseudo-label passed the filter")

func (o FilterOptions) validate() error {
	switch {
	case !(o.IoUThreshold >= 0 && o.IoUThreshold <= 1):
		return fmt.Errorf("invalid IoU threshold %v: must be in [0, 1], for example 0.4", o.IoUThreshold)
	case !(o.MaxAreaChange >= 0 && o.MaxAreaChange <= 1):
		return fmt.Errorf("invalid maximum area change %v: must be in [0, 1], for example 0.5", o.MaxAreaChange)
	case o.MinArea < 0:
		return fmt.Errorf("invalid minimum area %d: must be a number of pixels, 0 or more", o.MinArea)
	case o.MinComponent < 0:
		return fmt.Errorf("invalid minimum component %d: must be a number of pixels, 0 or more", o.MinComponent)
	}
	return nil
}

// Filter keeps the pseudo-labels of the run folder out (written by
// Propagate) that stay consistent in time, and writes them with their
// frames to OUT/filtered/frames and OUT/filtered/masks, the decision for
// every frame to OUT/filtered/filter.json, and the dropped pseudo-labels to
// OUT/pseudo/dropped.
//
// Small components are removed from every propagated pseudo-label first.
// Then a propagated frame t is kept when all of these hold:
//   - its warp IoU reaches o.IoUThreshold. For a neighbour n in {t-1, t+1},
//     the pseudo-label of n is backward-warped onto frame t by the flow
//     from t to n, and compared with the pseudo-label of t by IoU, both at
//     the flow resolution. The warp IoU is the higher of the two, so one
//     corrupted frame does not also drop its neighbours.
//   - its area differs from the closer of its neighbours' areas by at most
//     o.MaxAreaChange, measured as |a-b| / max(a, b).
//   - its area is at least o.MinArea pixels.
//
// Seed frames are always kept, with their seed mask unchanged. When no
// propagated frame is kept, Filter returns an error wrapping ErrNothingKept
// that gives the distribution of warp IoUs and a threshold to try, and
// leaves earlier outputs as they were.
func Filter(ctx context.Context, out string, o FilterOptions) (*FilterReport, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	prop, err := readPropagation(out)
	if err != nil {
		return nil, err
	}
	clip, err := OpenClip(prop.FramesDir)
	if err != nil {
		return nil, fmt.Errorf("frames of the propagation in %q: %w", out, err)
	}
	masks, err := readPseudoLabels(clip, filepath.Join(out, "pseudo", "masks"))
	if err != nil {
		return nil, err
	}
	seeds := map[int]bool{}
	for _, s := range prop.Seeds {
		index, err := clip.Index(s.Number)
		if err != nil {
			return nil, fmt.Errorf("seed of the propagation in %q: %w", out, err)
		}
		seeds[index] = true
	}

	flowOptions := segment.FlowOptions{Method: prop.FlowMethod, Scale: prop.FlowScale}
	flows := openFlows(filepath.Join(out, "flows"), clip, flowOptions)
	if flows == nil {
		scratch, err := os.MkdirTemp(out, ".filter-*.partial")
		if err != nil {
			return nil, fmt.Errorf("create flow cache in %q: %w", out, err)
		}
		defer os.RemoveAll(scratch)
		start := time.Now()
		flows, err = computeFlows(ctx, clip, flowOptions, scratch, func(done, total int) {
			if o.Progress != nil {
				o.Progress("flow", done, total)
			}
		})
		if err != nil {
			return nil, err
		}
		log.Info().Str("stage", "flow").Str("method", flowOptions.Method).Int("pairs", len(clip.Frames)-1).
			Float64("seconds", time.Since(start).Seconds()).Msg("computed optical flows")
	}

	decisions, err := filterMasks(ctx, clip, masks, seeds, flows, o)
	if err != nil {
		return nil, err
	}
	report := &FilterReport{IoUThreshold: o.IoUThreshold, MaxAreaChange: o.MaxAreaChange,
		MinArea: o.MinArea, MinComponent: o.MinComponent, Frames: decisions}
	for _, d := range decisions {
		if d.Kept {
			report.Kept++
		} else {
			report.Dropped++
		}
	}
	if err := checkKept(decisions, o); err != nil {
		return nil, err
	}
	if err := writeFiltered(out, clip, masks, report); err != nil {
		return nil, err
	}

	log.Info().Str("stage", "filter").Str("out", filepath.Join(out, "filtered")).Int("kept", report.Kept).
		Int("dropped", report.Dropped).Msg("filtered pseudo-labels")
	return report, nil
}

// readPropagation reads OUT/pseudo/propagation.json.
func readPropagation(out string) (*Propagation, error) {
	path := filepath.Join(out, "pseudo", "propagation.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read propagation record: %w; run medvseg propagate with --out %q first", err, out)
	}
	var prop Propagation
	if err := json.Unmarshal(data, &prop); err != nil {
		return nil, fmt.Errorf("read propagation record %q: %w; rerun medvseg propagate", path, err)
	}
	return &prop, nil
}

// readPseudoLabels reads the pseudo-label of every frame of clip from dir.
func readPseudoLabels(clip *Clip, dir string) ([]*image.Gray, error) {
	masks := make([]*image.Gray, len(clip.Frames))
	for i, f := range clip.Frames {
		path := filepath.Join(dir, f.Name)
		mask, _, err := segment.ReadMask(path)
		if err != nil {
			return nil, fmt.Errorf("pseudo-label of frame %q: %w; rerun medvseg propagate", f.Name, err)
		}
		masks[i] = mask
	}
	return masks, nil
}

// filterMasks decides which pseudo-labels of clip to keep, as Filter
// describes. It removes small components from the masks of propagated
// frames in place.
func filterMasks(ctx context.Context, clip *Clip, masks []*image.Gray, seeds map[int]bool,
	flows *flowStore, o FilterOptions) ([]FilterDecision, error) {
	decisions := make([]FilterDecision, len(masks))
	areas := make([]int, len(masks))
	small := make([]*image.Gray, len(masks))
	for i, mask := range masks {
		d := &decisions[i]
		d.Frame, d.Number, d.Seed = clip.Frames[i].Name, clip.Frames[i].Number, seeds[i]
		if !d.Seed && o.MinComponent > 0 {
			removed, err := removeSmallComponents(mask, o.MinComponent)
			if err != nil {
				return nil, fmt.Errorf("pseudo-label of frame %q: %w", d.Frame, err)
			}
			d.RemovedPixels = removed
		}
		areas[i] = countForeground(mask)
		d.Area = areas[i]

		var err error
		if small[i], err = resizeMask(mask, flows.index.Width, flows.index.Height); err != nil {
			return nil, err
		}
	}

	warper := segment.NewWarper()
	defer warper.Close()
	var flow segment.FlowField
	defer flow.Close()
	var warped image.Gray

	for t := range masks {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		d := &decisions[t]
		d.IoU, d.AreaChange = 0, 1
		for _, n := range []int{t - 1, t + 1} {
			if n < 0 || n >= len(masks) {
				continue
			}
			if err := flows.load(t, n, &flow); err != nil {
				return nil, err
			}
			if err := warper.WarpMask(small[n], &flow, &warped); err != nil {
				return nil, err
			}
			iou, err := segment.IoU(small[t], &warped)
			if err != nil {
				return nil, err
			}
			d.IoU = max(d.IoU, iou)
			d.AreaChange = min(d.AreaChange, areaChange(areas[t], areas[n]))
		}
		decide(d, o)
		if o.Progress != nil {
			o.Progress("filter", t+1, len(masks))
		}
	}
	return decisions, nil
}

// areaChange returns |a-b| / max(a, b), and 0 when both are 0.
func areaChange(a, b int) float64 {
	if a == 0 && b == 0 {
		return 0
	}
	return math.Abs(float64(a-b)) / float64(max(a, b))
}

// decide sets d.Kept and d.Reasons from the measures in d.
func decide(d *FilterDecision, o FilterOptions) {
	d.Reasons = nil
	if d.Seed {
		d.Kept = true
		return
	}
	if d.IoU < o.IoUThreshold {
		d.Reasons = append(d.Reasons, fmt.Sprintf("warp IoU %.3f is below %.3f", d.IoU, o.IoUThreshold))
	}
	if d.AreaChange > o.MaxAreaChange {
		d.Reasons = append(d.Reasons, fmt.Sprintf("area change %.3f is above %.3f", d.AreaChange, o.MaxAreaChange))
	}
	if d.Area < o.MinArea {
		d.Reasons = append(d.Reasons, fmt.Sprintf("area %d px is below %d px", d.Area, o.MinArea))
	}
	d.Kept = len(d.Reasons) == 0
}

// checkKept returns an error wrapping ErrNothingKept when frames were
// propagated and none of them was kept, with the warp IoU quartiles and a
// threshold to try.
func checkKept(decisions []FilterDecision, o FilterOptions) error {
	var ious []float64
	lowIoU, areaJump, tooSmall := 0, 0, 0
	for _, d := range decisions {
		if d.Seed {
			continue
		}
		if d.Kept {
			return nil
		}
		ious = append(ious, d.IoU)
		if d.IoU < o.IoUThreshold {
			lowIoU++
		}
		if d.AreaChange > o.MaxAreaChange {
			areaJump++
		}
		if d.Area < o.MinArea {
			tooSmall++
		}
	}
	if len(ious) == 0 {
		return nil
	}

	sort.Float64s(ious)
	q := func(p float64) float64 { return ious[int(math.Round(p*float64(len(ious)-1)))] }
	// Half the frames pass at the median, rounded down to a multiple of 0.05.
	suggest := math.Floor(q(0.5)*20) / 20
	return fmt.Errorf("%w: of %d frames, %d have a warp IoU below --iou-th %.2f, %d an area change above "+
		"--max-area-change %.2f and %d an area below --min-area %d; warp IoU min %.3f, quartiles %.3f / %.3f / %.3f, "+
		"max %.3f: try --iou-th %.2f, which keeps about half of them on IoU, or add seeds",
		ErrNothingKept, len(ious), lowIoU, o.IoUThreshold, areaJump, o.MaxAreaChange, tooSmall, o.MinArea,
		ious[0], q(0.25), q(0.5), q(0.75), ious[len(ious)-1], suggest)
}

// removeSmallComponents clears the 8-connected components of mask below
// minArea pixels and returns the number of pixels cleared.
func removeSmallComponents(mask *image.Gray, minArea int) (int, error) {
	w, h := mask.Rect.Dx(), mask.Rect.Dy()
	if mask.Stride != w || mask.Rect.Min != (image.Point{}) {
		return 0, fmt.Errorf("mask %dx%d has stride %d: expected a packed image at the origin", w, h, mask.Stride)
	}
	view, err := gocv.NewMatFromBytes(h, w, gocv.MatTypeCV8UC1, mask.Pix)
	if err != nil {
		return 0, err
	}
	defer view.Close()
	labels, stats, centroids := gocv.NewMat(), gocv.NewMat(), gocv.NewMat()
	defer labels.Close()
	defer stats.Close()
	defer centroids.Close()

	n := gocv.ConnectedComponentsWithStats(view, &labels, &stats, &centroids)
	tooSmall := make([]bool, n)
	found := false
	for label := 1; label < n; label++ {
		tooSmall[label] = stats.GetIntAt(label, int(gocv.CC_STAT_AREA)) < int32(minArea)
		found = found || tooSmall[label]
	}
	if !found {
		return 0, nil
	}

	raw, err := labels.DataPtrUint8()
	if err != nil {
		return 0, fmt.Errorf("read component labels: %w", err)
	}
	// The labels are CV_32S, four bytes a pixel in native byte order.
	ids := unsafe.Slice((*int32)(unsafe.Pointer(&raw[0])), len(raw)/4)
	removed := 0
	for i, id := range ids {
		if id > 0 && tooSmall[id] && mask.Pix[i] != 0 {
			mask.Pix[i] = 0
			removed++
		}
	}
	return removed, nil
}

// writeFiltered writes OUT/filtered (frames, masks, filter.json) and
// OUT/pseudo/dropped, each replaced only once it is complete.
func writeFiltered(out string, clip *Clip, masks []*image.Gray, report *FilterReport) error {
	filtered, err := newStagedFolder(filepath.Join(out, "filtered"))
	if err != nil {
		return err
	}
	defer filtered.abort()
	dropped, err := newStagedFolder(filepath.Join(out, "pseudo", "dropped"))
	if err != nil {
		return err
	}
	defer dropped.abort()

	for _, dir := range []string{"frames", "masks"} {
		if err := os.Mkdir(filtered.path(dir), 0o755); err != nil {
			return fmt.Errorf("create %q: %w", filtered.path(dir), err)
		}
	}
	for i, d := range report.Frames {
		name := clip.Frames[i].Name
		if !d.Kept {
			if err := codec.WriteGray(dropped.path(name), masks[i]); err != nil {
				return err
			}
			continue
		}
		if err := linkOrCopy(clip.Frames[i].Path, filtered.path(filepath.Join("frames", name))); err != nil {
			return err
		}
		if err := codec.WriteGray(filtered.path(filepath.Join("masks", name)), masks[i]); err != nil {
			return err
		}
	}

	data, err := json.MarshalIndent(report, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filtered.path("filter.json"), data, 0o644); err != nil {
		return fmt.Errorf("write filter record: %w", err)
	}
	if err := filtered.commit(); err != nil {
		return err
	}
	return dropped.commit()
}

// linkOrCopy hard-links src to dst, or copies it when a link is not
// possible (another file system, or one without hard links).
func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy frame %q: %w", src, err)
	}
	defer in.Close()
	outFile, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("copy frame %q: %w", src, err)
	}
	_, err = io.Copy(outFile, in)
	if closeErr := outFile.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return fmt.Errorf("copy frame %q to %q: %w", src, dst, err)
	}
	return nil
}
