package trainer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog/log"
	"gocv.io/x/gocv"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/segment"
)

// PropagateOptions configures Propagate.
type PropagateOptions struct {
	// Flow selects the optical flow method and the flow resolution as a
	// fraction of the frame size. Masks are propagated at that resolution.
	Flow segment.FlowOptions
	// ConsistencyThreshold is the largest forward-backward flow error, in
	// pixels at the flow resolution, of a pixel that counts as consistent.
	ConsistencyThreshold float64
	// Threshold is the probability above which a pixel of the fused map is
	// lesion, in (0, 1).
	Threshold float64
	// ResizeSeeds resizes seeds of another size than their frame with
	// nearest-neighbour interpolation instead of failing.
	ResizeSeeds bool
	// KeepFlows keeps the flows in OUT/flows after the run.
	KeepFlows bool
	// Progress, if not nil, is called after each unit of work of a stage
	// ("flow": frame pairs, "propagate": frames).
	Progress func(stage string, done, total int)
}

// DefaultPropagateOptions are the options of medvseg propagate.
var DefaultPropagateOptions = PropagateOptions{
	Flow:                 segment.FlowOptions{Method: segment.FlowDISMedium, Scale: 1},
	ConsistencyThreshold: 1,
	Threshold:            0.5,
}

// inconsistentDecay multiplies the confidence of a propagated pixel at each
// step where its forward and backward flows disagree, so a chain that
// crossed an occlusion counts less in the fusion than one that did not.
// NOTE: 0.5 is a chosen value, not tuned on data.
const inconsistentDecay = 0.5

// Propagation is the record that Propagate writes to OUT/pseudo/propagation.json.
type Propagation struct {
	// FramesDir is the folder of the frames that were propagated through.
	FramesDir string `json:"frames_dir"`
	// FlowMethod and FlowScale are the optical flow options.
	FlowMethod string  `json:"flow_method"`
	FlowScale  float64 `json:"flow_scale"`
	// ConsistencyThreshold is PropagateOptions.ConsistencyThreshold.
	ConsistencyThreshold float64 `json:"consistency_threshold"`
	// Threshold is PropagateOptions.Threshold.
	Threshold float64 `json:"threshold"`
	// Seeds are the seed masks, in frame order.
	Seeds []Seed `json:"seeds"`
	// Frames has one record per frame, in frame order.
	Frames []PropagationRecord `json:"frames"`
	// EmptyFrames names the propagated frames whose pseudo-label is empty.
	EmptyFrames []string `json:"empty_frames,omitempty"`
}

// PropagationRecord describes how the pseudo-label of one frame was made.
type PropagationRecord struct {
	Frame  string `json:"frame"`
	Number int    `json:"number"`
	// Seed is set on seed frames, whose pseudo-label is the seed mask.
	Seed bool `json:"seed"`
	// Area is the number of lesion pixels of the pseudo-label.
	Area int `json:"area"`
	// Sources are the seeds fused into this frame: the nearest one before
	// it and the nearest one after it, when they exist.
	Sources []PropagationSource `json:"sources,omitempty"`
}

// PropagationSource is one seed's contribution to a frame.
type PropagationSource struct {
	// Seed is the frame number of the seed.
	Seed int `json:"seed"`
	// Distance is the number of frames between the seed and this frame.
	Distance int `json:"distance"`
	// Weight is the temporal weight of the seed, proportional to
	// 1/Distance and summing to 1 over the sources. Each pixel's weight is
	// this times its consistency.
	Weight float64 `json:"weight"`
	// Consistency is the mean confidence, over the lesion pixels that this
	// seed alone propagates to the frame, of the chain of warps from the
	// seed: 1 where every step's forward and backward flows agreed, halved
	// for every step where they did not. It is 0 when that mask is empty.
	Consistency float64 `json:"consistency"`
}

// Propagate propagates the seed masks through the frames of framesDir and
// writes the pseudo-labels to OUT/pseudo/masks/NAME.png (0 or 255, the
// frames' names) and their records to OUT/pseudo/propagation.json.
//
// Every seed is propagated forward to the next seed and backward to the
// previous one (or to the clip's ends) by warping a probability map with
// the optical flow between adjacent frames. A frame between two seeds
// takes, per pixel, the mean of both propagated maps weighted by the
// inverse temporal distance to each seed times the chain's flow
// consistency, and the fused map is thresholded at o.Threshold at the
// frame size. Seed frames keep their seed.
//
// Flows are computed once and cached in OUT, then deleted unless
// o.KeepFlows. Flows already in OUT/flows are reused when they match the
// frames and the flow options. Outputs replace earlier ones only when the
// whole run succeeds. A propagated pseudo-label that is empty gets a
// warning, and an error when every propagated frame is empty.
func Propagate(ctx context.Context, framesDir string, src SeedSource, out string, o PropagateOptions) (*Propagation, error) {
	o = o.withDefaults()
	// Options are checked before the flows, which take most of the run.
	if err := o.validate(); err != nil {
		return nil, err
	}
	clip, err := OpenClip(framesDir)
	if err != nil {
		return nil, err
	}
	seeds, err := LoadSeeds(clip, src, o.ResizeSeeds)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, fmt.Errorf("create output folder %q: %w; choose a folder you can write to", out, err)
	}

	scratch, err := os.MkdirTemp(out, ".propagate-*.partial")
	if err != nil {
		return nil, fmt.Errorf("create output folder %q: %w; choose a folder you can write to", out, err)
	}
	defer os.RemoveAll(scratch)

	flows, keptFlows, err := prepareFlows(ctx, clip, out, scratch, o)
	if err != nil {
		return nil, err
	}
	defer keptFlows.abort()

	masks, err := newStagedFolder(filepath.Join(out, "pseudo", "masks"))
	if err != nil {
		return nil, err
	}
	defer masks.abort()

	// An absolute path lets filter find the frames from any working folder.
	absFrames, err := filepath.Abs(framesDir)
	if err != nil {
		return nil, fmt.Errorf("frames folder %q: %w", framesDir, err)
	}
	result := &Propagation{
		FramesDir: absFrames, FlowMethod: o.Flow.Method, FlowScale: flows.index.Scale,
		ConsistencyThreshold: o.ConsistencyThreshold, Threshold: o.Threshold, Seeds: seeds,
	}
	start := time.Now()
	records, err := propagateClip(ctx, clip, seeds, flows, scratch, o, func(i int, mask *image.Gray) error {
		return codec.WriteGray(masks.path(clip.Frames[i].Name), mask)
	})
	if err != nil {
		return nil, err
	}
	result.Frames = records
	result.EmptyFrames, err = checkEmpty(clip, records)
	if err != nil {
		return nil, err
	}

	data, err := json.MarshalIndent(result, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := masks.commit(); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(out, "pseudo", "propagation.json"), data); err != nil {
		return nil, err
	}
	if keptFlows != nil {
		if err := keptFlows.commit(); err != nil {
			return nil, err
		}
	}

	log.Info().Str("stage", "propagate").Str("out", filepath.Join(out, "pseudo")).Int("frames", len(records)).
		Int("seeds", len(seeds)).Int("empty", len(result.EmptyFrames)).
		Float64("seconds", time.Since(start).Seconds()).Msg("propagated seed masks")
	return result, nil
}

func (o PropagateOptions) withDefaults() PropagateOptions {
	d := DefaultPropagateOptions
	if o.Flow.Method == "" {
		o.Flow.Method = d.Flow.Method
	}
	if o.ConsistencyThreshold == 0 {
		o.ConsistencyThreshold = d.ConsistencyThreshold
	}
	if o.Threshold == 0 {
		o.Threshold = d.Threshold
	}
	return o
}

func (o PropagateOptions) validate() error {
	if !(o.Threshold > 0 && o.Threshold < 1) {
		return fmt.Errorf("invalid threshold %v: must be in (0, 1), for example 0.5", o.Threshold)
	}
	if !(o.ConsistencyThreshold > 0) {
		return fmt.Errorf("invalid consistency threshold %v: must be a positive number of pixels", o.ConsistencyThreshold)
	}
	if scale := o.Flow.Scale; !(scale >= 0 && scale <= 1) {
		return fmt.Errorf("invalid flow scale %v: must be in (0, 1], for example 0.5 for half resolution", scale)
	}
	return nil
}

// prepareFlows returns the flows of clip: those kept in OUT/flows when they
// match, else newly computed ones, in a staged OUT/flows when o.KeepFlows
// and in scratch otherwise. The caller commits and aborts the returned
// staged folder, which is nil when there is nothing to commit.
func prepareFlows(ctx context.Context, clip *Clip, out, scratch string, o PropagateOptions) (*flowStore, *stagedFolder, error) {
	kept := filepath.Join(out, "flows")
	if store := openFlows(kept, clip, o.Flow); store != nil {
		log.Info().Str("stage", "flow").Str("dir", kept).Msg("reusing kept optical flows")
		return store, nil, nil
	}

	dir := filepath.Join(scratch, "flows")
	var staged *stagedFolder
	if o.KeepFlows {
		var err error
		if staged, err = newStagedFolder(kept); err != nil {
			return nil, nil, err
		}
		dir = staged.staging
	} else if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("create flow cache %q: %w", dir, err)
	}

	start := time.Now()
	progress := func(done, total int) {
		if o.Progress != nil {
			o.Progress("flow", done, total)
		}
	}
	store, err := computeFlows(ctx, clip, o.Flow, dir, progress)
	if err != nil {
		staged.abort()
		return nil, nil, err
	}
	log.Info().Str("stage", "flow").Str("method", o.Flow.Method).Int("pairs", len(clip.Frames)-1).
		Int("width", store.index.Width).Int("height", store.index.Height).
		Float64("seconds", time.Since(start).Seconds()).Msg("computed optical flows")
	return store, staged, nil
}

// checkEmpty returns the names of the propagated frames with an empty
// pseudo-label and logs one warning for them, or returns an error when
// every propagated frame is empty.
func checkEmpty(clip *Clip, records []PropagationRecord) ([]string, error) {
	var empty []int
	propagated := 0
	for i, r := range records {
		if r.Seed {
			continue
		}
		propagated++
		if r.Area == 0 {
			empty = append(empty, i)
		}
	}
	if len(empty) == 0 {
		return nil, nil
	}

	ranges := frameRanges(clip, empty)
	if len(empty) == propagated {
		return nil, fmt.Errorf("every propagated pseudo-label is empty (%s): the seed masks vanish when warped; check that they mark the lesion in the right frames, or try another --flow",
			strings.Join(ranges, ", "))
	}
	log.Warn().Int("frames", len(empty)).Strs("ranges", ranges).
		Msg("propagated pseudo-labels are empty from these frames on: the lesion may leave the view, or propagation lost it; add a seed there")

	names := make([]string, len(empty))
	for i, index := range empty {
		names[i] = clip.Frames[index].Name
	}
	return names, nil
}

// frameRanges writes sorted frame indexes as runs of consecutive frames:
// "0012.png to 0016.png", or one name for a run of one.
func frameRanges(clip *Clip, indexes []int) []string {
	var out []string
	for start := 0; start < len(indexes); {
		end := start
		for end+1 < len(indexes) && indexes[end+1] == indexes[end]+1 {
			end++
		}
		first, last := clip.Frames[indexes[start]].Name, clip.Frames[indexes[end]].Name
		if start == end {
			out = append(out, first)
		} else {
			out = append(out, first+" to "+last)
		}
		start = end + 1
	}
	return out
}

// chain is a probability map propagated from one seed, with its per-pixel
// confidence: 1 at the seed, multiplied by inconsistentDecay at each step
// where the flow was not forward-backward consistent.
type chain struct {
	seed int // index in the seeds slice
	prob *segment.Map
	conf *segment.Map
}

// propagator carries chains between adjacent frames of a clip.
type propagator struct {
	flows      *flowStore
	o          PropagateOptions
	warper     *segment.Warper
	toFrom     segment.FlowField // flow from the target frame to the source frame
	fromTo     segment.FlowField // flow from the source frame to the target frame
	consistent image.Gray
	scratch    segment.Map
}

func newPropagator(flows *flowStore, o PropagateOptions) *propagator {
	return &propagator{flows: flows, o: o, warper: segment.NewWarper()}
}

func (p *propagator) close() {
	p.warper.Close()
	p.toFrom.Close()
	p.fromTo.Close()
}

// start returns a chain that holds seed s at the flow resolution.
func (p *propagator) start(seeds []Seed, s int) (*chain, error) {
	w, h := p.flows.index.Width, p.flows.index.Height
	prob, err := maskToMap(seeds[s].mask, w, h)
	if err != nil {
		return nil, err
	}
	conf := segment.NewMap(w, h)
	for i := range conf.Pix {
		conf.Pix[i] = 1
	}
	return &chain{seed: s, prob: prob, conf: conf}, nil
}

// step carries c from frame index `from` to the adjacent frame index `to`.
// Following the flow convention of package segment, the map of `from` is
// backward-warped by the flow from `to` to `from`, which is defined on the
// grid of `to`.
func (p *propagator) step(c *chain, from, to int) error {
	if err := p.flows.load(to, from, &p.toFrom); err != nil {
		return err
	}
	if err := p.flows.load(from, to, &p.fromTo); err != nil {
		return err
	}

	for _, m := range []**segment.Map{&c.prob, &c.conf} {
		if err := p.warper.WarpMap(*m, &p.toFrom, &p.scratch); err != nil {
			return err
		}
		(*m).CopyFrom(&p.scratch)
	}

	if err := p.warper.Consistency(&p.toFrom, &p.fromTo, p.o.ConsistencyThreshold, &p.consistent); err != nil {
		return err
	}
	for i, v := range p.consistent.Pix {
		if v == 0 {
			c.conf.Pix[i] *= inconsistentDecay
		}
	}
	return nil
}

// propagateClip runs the propagation of seeds through clip and hands every
// frame's pseudo-label, at the frame size, to emit. It returns one record
// per frame in frame order. scratch is a folder for maps kept between the
// backward and the forward pass.
func propagateClip(ctx context.Context, clip *Clip, seeds []Seed, flows *flowStore, scratch string,
	o PropagateOptions, emit func(index int, mask *image.Gray) error) ([]PropagationRecord, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if len(seeds) == 0 {
		return nil, errors.New("propagate: no seed masks: give at least one")
	}

	p := newPropagator(flows, o)
	defer p.close()
	f := &fuser{p: p, clip: clip, seeds: seeds, scratch: scratch, emit: emit,
		records: make([]PropagationRecord, len(clip.Frames))}

	for s := range seeds {
		if err := f.emitSeed(s); err != nil {
			return nil, err
		}
	}
	for k := 0; k <= len(seeds); k++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := f.segment(k-1, k); err != nil {
			return nil, err
		}
	}
	return f.records, nil
}

// fuser propagates through the frames between two seeds and fuses the two
// chains.
type fuser struct {
	p       *propagator
	clip    *Clip
	seeds   []Seed
	scratch string
	emit    func(index int, mask *image.Gray) error
	records []PropagationRecord
	done    int

	fused   segment.Map
	full    segment.Map
	mask    image.Gray
	fromEnd *chain // the backward chain's maps read back from scratch
}

func (f *fuser) progress() {
	f.done++
	if f.p.o.Progress != nil {
		f.p.o.Progress("propagate", f.done, len(f.clip.Frames))
	}
}

func (f *fuser) emitSeed(s int) error {
	seed := f.seeds[s]
	f.records[seed.index] = PropagationRecord{
		Frame: seed.Frame, Number: seed.Number, Seed: true, Area: countForeground(seed.mask),
	}
	if err := f.emit(seed.index, seed.mask); err != nil {
		return err
	}
	f.progress()
	return nil
}

// segment fills the frames between seed left and seed right (indexes into
// f.seeds, -1 or len(f.seeds) when there is none on that side).
func (f *fuser) segment(left, right int) error {
	lo, hi := -1, len(f.clip.Frames)
	if left >= 0 {
		lo = f.seeds[left].index
	}
	if right < len(f.seeds) {
		hi = f.seeds[right].index
	} else {
		right = -1
	}
	if hi-lo < 2 {
		return nil
	}

	if right >= 0 {
		c, err := f.p.start(f.seeds, right)
		if err != nil {
			return err
		}
		for t := hi - 1; t > lo; t-- {
			if err := f.p.step(c, t+1, t); err != nil {
				return err
			}
			if left >= 0 {
				if err := f.save(t, c); err != nil {
					return err
				}
				continue
			}
			if err := f.output(t, nil, c, lo, hi); err != nil {
				return err
			}
		}
	}
	if left < 0 {
		return nil
	}

	c, err := f.p.start(f.seeds, left)
	if err != nil {
		return err
	}
	for t := lo + 1; t < hi; t++ {
		if err := f.p.step(c, t-1, t); err != nil {
			return err
		}
		var back *chain
		if right >= 0 {
			if back, err = f.load(t, right); err != nil {
				return err
			}
		}
		if err := f.output(t, c, back, lo, hi); err != nil {
			return err
		}
	}
	return nil
}

// output fuses the chains from the seed before frame t (fwd, at frame lo)
// and the seed after it (back, at frame hi), either of which may be nil,
// thresholds the result at the frame size and emits it.
func (f *fuser) output(t int, fwd, back *chain, lo, hi int) error {
	record := PropagationRecord{Frame: f.clip.Frames[t].Name, Number: f.clip.Frames[t].Number}
	var wf, wb float64
	if fwd != nil {
		wf = 1 / float64(t-lo)
	}
	if back != nil {
		wb = 1 / float64(hi-t)
	}
	for _, side := range []struct {
		c        *chain
		weight   float64
		distance int
	}{{fwd, wf, t - lo}, {back, wb, hi - t}} {
		if side.c == nil {
			continue
		}
		record.Sources = append(record.Sources, PropagationSource{
			Seed: f.seeds[side.c.seed].Number, Distance: side.distance,
			Weight: side.weight / (wf + wb), Consistency: meanConfidence(side.c, f.p.o.Threshold),
		})
	}

	fuse(&f.fused, fwd, back, float32(wf), float32(wb))
	width, height := f.p.flows.index.FrameWidth, f.p.flows.index.FrameHeight
	if err := resizeMap(&f.fused, &f.full, width, height, gocv.InterpolationLinear); err != nil {
		return err
	}
	record.Area = f.full.Threshold(f.p.o.Threshold, &f.mask)
	f.records[t] = record

	if err := f.emit(t, &f.mask); err != nil {
		return err
	}
	f.progress()
	return nil
}

// fuse writes into dst, per pixel, the mean of the chains' probabilities
// weighted by temporal weight times confidence. Where both confidences are
// about 0 it falls back to the temporal weights alone.
func fuse(dst *segment.Map, a, b *chain, wa, wb float32) {
	if a == nil || b == nil {
		only := a
		if only == nil {
			only = b
		}
		dst.CopyFrom(only.prob)
		return
	}

	dst.Resize(a.prob.Width, a.prob.Height)
	const tiny = 1e-6
	for i := range dst.Pix {
		ka, kb := wa*a.conf.Pix[i], wb*b.conf.Pix[i]
		if ka+kb < tiny {
			ka, kb = wa, wb
		}
		dst.Pix[i] = (ka*a.prob.Pix[i] + kb*b.prob.Pix[i]) / (ka + kb)
	}
}

// meanConfidence returns the mean confidence of c over the pixels where its
// probability is above threshold, or 0 when there are none.
func meanConfidence(c *chain, threshold float64) float64 {
	t := float32(threshold)
	sum, n := 0.0, 0
	for i, v := range c.prob.Pix {
		if v > t {
			sum += float64(c.conf.Pix[i])
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// save writes the maps of chain c at frame t to the scratch folder.
func (f *fuser) save(t int, c *chain) error {
	data := append(append([]byte(nil), float32Bytes(c.prob.Pix)...), float32Bytes(c.conf.Pix)...)
	path := filepath.Join(f.scratch, fmt.Sprintf("chain-%d.raw", t))
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("save propagated map: %w", err)
	}
	return nil
}

// load reads back the maps that save wrote for frame t, as a chain from seed s.
func (f *fuser) load(t, s int) (*chain, error) {
	path := filepath.Join(f.scratch, fmt.Sprintf("chain-%d.raw", t))
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read propagated map: %w", err)
	}
	w, h := f.p.flows.index.Width, f.p.flows.index.Height
	if f.fromEnd == nil {
		f.fromEnd = &chain{prob: segment.NewMap(w, h), conf: segment.NewMap(w, h)}
	}
	n := w * h * 4
	if len(data) != 2*n {
		return nil, fmt.Errorf("read propagated map %q: %d bytes, expected %d", path, len(data), 2*n)
	}
	copy(float32Bytes(f.fromEnd.prob.Pix), data[:n])
	copy(float32Bytes(f.fromEnd.conf.Pix), data[n:])
	os.Remove(path)
	f.fromEnd.seed = s
	return f.fromEnd, nil
}
