package stream

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/segment"
)

// Stats summarises a run of the loop.
type Stats struct {
	Frames    int
	Keyframes int
	// Reasons counts keyframes by why they were chosen (ReasonFirst, ...).
	Reasons map[string]int
	// Dropped counts frames a live source lost because the loop fell behind.
	Dropped uint64
	Elapsed time.Duration
	// Latency summarises each stage's delay after capture.
	Latency map[Stage]LatencySummary
}

// FPS returns the processed frames per second of wall time.
func (s Stats) FPS() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Frames) / s.Elapsed.Seconds()
}

// Processor is the real-time loop for recorded video: it runs the
// segmenter on keyframes and propagates masks with optical flow on the
// frames between. Inference runs beside decoding, flow and encoding, but
// every frame waits for the result of its own keyframe, so the same input
// gives the same output whatever the load. A Processor runs one video at a
// time.
type Processor struct {
	options   Options
	segmenter Segmenter

	flow        segment.FlowEstimator
	flowDrift   segment.DriftMeter // used by the flow stage
	maskDrift   segment.DriftMeter // used by the propagation stage
	warper      segment.Warper
	overlay     *segment.Overlay
	states      map[*Slot]*frameState
	latencySize int
}

// frameState is the per-slot working memory of the loop, reused as slots cycle.
type frameState struct {
	slot *Slot

	backward segment.FlowField // from this frame to the previous one
	forward  segment.FlowField // from the previous frame to this one
	hasFlow  bool
	hasBoth  bool

	keyframe bool
	reason   string
	result   segment.Map // the segmenter's output
	prob     segment.Map // the map after propagation or smoothing
	mask     image.Gray

	done chan inference
}

type inference struct {
	ok  bool
	err error
}

// NewProcessor prepares the loop around a segmenter.
func NewProcessor(segmenter Segmenter, options Options) (*Processor, error) {
	options, err := options.withDefaults()
	if err != nil {
		return nil, err
	}

	flow, overlay, err := newFlowAndOverlay(options)
	if err != nil {
		return nil, err
	}

	return &Processor{
		options:     options,
		segmenter:   segmenter,
		flow:        flow,
		overlay:     overlay,
		states:      map[*Slot]*frameState{},
		latencySize: 100_000,
	}, nil
}

// Options returns the options in effect, defaults filled in.
func (p *Processor) Options() Options { return p.options }

// Run processes src to its end and hands every frame's result to the sinks
// in order. It closes every sink: with the run's error when it failed, so
// the sinks discard their partial output.
func (p *Processor) Run(ctx context.Context, src Source, sinks ...Sink) (Stats, error) {
	stats, err := p.run(ctx, src, sinks)

	for _, sink := range sinks {
		if closeErr := sink.Close(err); closeErr != nil && err == nil {
			err = closeErr
		}
	}
	return stats, err
}

func (p *Processor) run(ctx context.Context, src Source, sinks []Sink) (Stats, error) {
	info := src.Info()
	ring, err := NewRing(p.options.RingCapacity, info.Width, info.Height, Block)
	if err != nil {
		return Stats{}, err
	}

	stats := Stats{Reasons: map[string]int{}}
	latency := NewLatencyWindow(p.latencySize)
	start := time.Now()

	flowed := make(chan *frameState, ring.Capacity())
	segmented := make(chan *frameState, ring.Capacity())
	jobs := make(chan *frameState, ring.Capacity()+1)

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return Produce(ctx, src, ring, false, nil) })
	g.Go(func() error { return p.flowStage(ctx, ring, jobs, flowed) })
	g.Go(func() error { return p.inferenceStage(ctx, jobs) })
	g.Go(func() error { return p.propagationStage(ctx, flowed, jobs, segmented) })
	g.Go(func() error { return p.renderStage(ctx, ring, segmented, sinks, &stats, latency) })
	err = g.Wait()

	stats.Elapsed = time.Since(start)
	stats.Latency = latency.Summary()
	stats.Dropped = ring.Dropped()
	if err == nil && stats.Frames == 0 {
		err = fmt.Errorf("process %q: the video has no frames", info.URL)
	}
	return stats, err
}

func (p *Processor) state(slot *Slot) *frameState {
	st, ok := p.states[slot]
	if !ok {
		st = &frameState{slot: slot, done: make(chan inference, 1)}
		p.states[slot] = st
	}
	return st
}

// flowStage computes the flows of each frame against the previous one and
// decides from them which frames are keyframes, starting their inference at once.
func (p *Processor) flowStage(ctx context.Context, ring *Ring, jobs, out chan<- *frameState) error {
	defer close(out)

	previous := &codec.Frame{}
	sinceKeyframe := 0
	var recent errorWindow
	checkConsistency := p.options.Drift.Inconsistency > 0

	for {
		slot, err := ring.Next(ctx)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}

		st := p.state(slot)
		st.keyframe, st.reason, st.hasFlow, st.hasBoth = false, "", false, false
		frame := &slot.Frame

		switch {
		case previous.Width != frame.Width || previous.Height != frame.Height:
			st.keyframe, st.reason = true, ReasonFirst
		default:
			if err := p.flow.Compute(frame, previous, &st.backward); err != nil {
				return fmt.Errorf("flow to frame %d: %w", frame.Index+1, err)
			}
			st.hasFlow = true

			if checkConsistency {
				if err := p.flow.Compute(previous, frame, &st.forward); err != nil {
					return fmt.Errorf("flow from frame %d: %w", frame.Index, err)
				}
				st.hasBoth = true
			}

			st.keyframe, st.reason, err = p.scheduleByFlow(st, previous, sinceKeyframe, &recent)
			if err != nil {
				return err
			}
		}

		if st.keyframe {
			sinceKeyframe = 0
			if err := send(ctx, jobs, st); err != nil {
				return err
			}
		} else {
			sinceKeyframe++
		}

		previous.CopyFrom(frame)
		if err := send(ctx, out, st); err != nil {
			return err
		}
	}
}

// scheduleByFlow decides from the interval and the photometric error whether
// a frame with a flow is a keyframe.
func (p *Processor) scheduleByFlow(st *frameState, previous *codec.Frame, sinceKeyframe int,
	recent *errorWindow) (bool, string, error) {
	drift := p.options.Drift
	photometric := false
	if drift.PhotometricError > 0 {
		e, err := p.flowDrift.PhotometricError(&st.slot.Frame, previous, &st.backward)
		if err != nil {
			return false, "", fmt.Errorf("frame %d: %w", st.slot.Frame.Index+1, err)
		}
		photometric = e > drift.PhotometricError && e > drift.PhotometricRatio*recent.median()
		if !photometric {
			recent.add(e)
		}
	}

	switch {
	case photometric:
		return true, ReasonPhotometric, nil
	case sinceKeyframe+1 >= p.options.KeyframeInterval:
		return true, ReasonInterval, nil
	}
	return false, "", nil
}

// errorWindow holds the photometric errors of the last frames that were not
// scene cuts, to compare a new error with the usual level of the video.
type errorWindow struct {
	values [16]float64
	count  int
	next   int
	sorted [16]float64
}

func (w *errorWindow) add(v float64) {
	w.values[w.next] = v
	w.next = (w.next + 1) % len(w.values)
	w.count = min(w.count+1, len(w.values))
}

// median returns the median of the window, 0 when it is empty.
func (w *errorWindow) median() float64 {
	if w.count == 0 {
		return 0
	}
	s := w.sorted[:w.count]
	copy(s, w.values[:w.count])
	slices.Sort(s)
	return s[w.count/2]
}

// inferenceStage runs the segmenter on keyframes, one at a time, in the
// order they were queued.
func (p *Processor) inferenceStage(ctx context.Context, jobs <-chan *frameState) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case st, ok := <-jobs:
			if !ok {
				return nil
			}
			done, err := p.segmenter.Segment(&st.slot.Frame, &st.result)
			st.done <- inference{ok: done, err: err}
		}
	}
}

// propagationStage gives every frame its probability map and mask, in
// order: the model's result on keyframes, the previous map warped by the
// flow elsewhere.
func (p *Processor) propagationStage(ctx context.Context, in <-chan *frameState, jobs chan<- *frameState,
	out chan<- *frameState) error {
	defer close(out)

	var previous segment.Map
	var previousMask image.Gray
	hasPrevious := false
	previousArea := 0

	for {
		st, err := receive(ctx, in)
		if err != nil {
			return err
		}
		if st == nil {
			// The flow stage has finished, so this stage is the last sender
			// of jobs. On an error the channel stays open: the flow stage may
			// still be sending, and the inference stage ends with the context.
			close(jobs)
			return nil
		}

		segmented := false
		if st.keyframe {
			if segmented, err = p.await(ctx, st); err != nil {
				return err
			}
			st.keyframe = segmented
			if !segmented {
				st.reason = ""
			}
		}

		if segmented {
			if err := p.smooth(st, &previous, hasPrevious); err != nil {
				return err
			}
		} else {
			if err := p.propagate(st, &previous, hasPrevious); err != nil {
				return err
			}
			if err := p.promoteIfDrifting(ctx, st, jobs, &previousMask, hasPrevious, previousArea); err != nil {
				return err
			}
		}

		previousArea = st.prob.Threshold(p.options.Threshold, &st.mask)
		previous.CopyFrom(&st.prob)
		copyGray(&previousMask, &st.mask)
		hasPrevious = true

		st.slot.Times.Segmented = time.Now()
		if err := send(ctx, out, st); err != nil {
			return err
		}
	}
}

// await waits for the inference of a keyframe and reports whether the
// segmenter had a result.
func (p *Processor) await(ctx context.Context, st *frameState) (bool, error) {
	select {
	case <-ctx.Done():
		return false, ctx.Err()
	case r := <-st.done:
		return r.ok, r.err
	}
}

// smooth turns a keyframe's result into its probability map, blending in the
// previous map warped onto this frame when smoothing is on.
func (p *Processor) smooth(st *frameState, previous *segment.Map, hasPrevious bool) error {
	weight := float32(p.options.Smooth)
	if weight == 0 || !hasPrevious || !st.hasFlow {
		st.prob.CopyFrom(&st.result)
		return nil
	}

	if err := p.warper.WarpMap(previous, &st.backward, &st.prob); err != nil {
		return fmt.Errorf("frame %d: %w", st.slot.Frame.Index+1, err)
	}
	for i, v := range st.result.Pix {
		st.prob.Pix[i] = (1-weight)*v + weight*st.prob.Pix[i]
	}
	return nil
}

// propagate carries the previous map onto this frame along the flow; a
// frame with no earlier map gets an empty one.
func (p *Processor) propagate(st *frameState, previous *segment.Map, hasPrevious bool) error {
	frame := &st.slot.Frame
	if !hasPrevious || !st.hasFlow {
		st.prob.Resize(frame.Width, frame.Height)
		clear(st.prob.Pix)
		return nil
	}

	if err := p.warper.WarpMap(previous, &st.backward, &st.prob); err != nil {
		return fmt.Errorf("propagate to frame %d: %w", frame.Index+1, err)
	}
	return nil
}

// promoteIfDrifting runs the segmenter on a propagated frame when the mask
// area jumps or the flow under the previous mask is inconsistent.
func (p *Processor) promoteIfDrifting(ctx context.Context, st *frameState, jobs chan<- *frameState,
	previousMask *image.Gray, hasPrevious bool, previousArea int) error {
	if !hasPrevious || !st.hasFlow {
		return nil
	}

	reason := ""
	drift := p.options.Drift
	if drift.AreaChange > 0 && previousArea > 0 {
		area := st.prob.Threshold(p.options.Threshold, &st.mask)
		change := float64(area-previousArea) / float64(previousArea)
		if change > drift.AreaChange || change < -drift.AreaChange {
			reason = ReasonAreaChange
		}
	}

	if reason == "" && st.hasBoth && drift.Inconsistency > 0 {
		share, err := p.maskDrift.Inconsistency(&st.forward, &st.backward, previousMask, drift.ConsistencyTolerance)
		if err != nil {
			return fmt.Errorf("frame %d: %w", st.slot.Frame.Index+1, err)
		}
		if share > drift.Inconsistency {
			reason = ReasonInconsistency
		}
	}

	if reason == "" {
		return nil
	}

	// A promoted frame joins the queue behind keyframes already sent, and
	// waits for its own result, so the outcome does not depend on timing.
	if err := send(ctx, jobs, st); err != nil {
		return err
	}
	segmented, err := p.await(ctx, st)
	if err != nil || !segmented {
		return err
	}

	st.keyframe, st.reason = true, reason
	st.prob.CopyFrom(&st.result)
	return nil
}

// renderStage draws the overlay, hands each result to the sinks and gives
// the slot back to the decoder.
func (p *Processor) renderStage(ctx context.Context, ring *Ring, in <-chan *frameState, sinks []Sink,
	stats *Stats, latency *LatencyWindow) error {
	for {
		st, err := receive(ctx, in)
		if err != nil || st == nil {
			return err
		}

		slot := st.slot
		if err := p.overlay.Draw(&slot.Frame, &st.mask); err != nil {
			return fmt.Errorf("overlay frame %d: %w", slot.Frame.Index+1, err)
		}
		slot.Times.Rendered = time.Now()

		result := Result{Frame: &slot.Frame, Mask: &st.mask, Probability: &st.prob, Keyframe: st.keyframe,
			Reason: st.reason, Times: &slot.Times}
		for _, sink := range sinks {
			if err := sink.Write(&result); err != nil {
				return err
			}
		}
		slot.Times.Encoded = time.Now()
		latency.Record(&slot.Times)

		stats.Frames++
		if st.keyframe {
			stats.Keyframes++
			stats.Reasons[st.reason]++
		}
		ring.Release(slot)
	}
}

// Close releases the flow, overlay and per-frame native resources.
func (p *Processor) Close() error {
	for _, st := range p.states {
		st.backward.Close()
		st.forward.Close()
	}
	p.states = map[*Slot]*frameState{}
	p.flowDrift.Close()
	p.maskDrift.Close()
	p.warper.Close()
	p.overlay.Close()
	return p.flow.Close()
}

func send(ctx context.Context, ch chan<- *frameState, st *frameState) error {
	select {
	case ch <- st:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// receive returns the next state, or nil when the channel is closed.
func receive(ctx context.Context, ch <-chan *frameState) (*frameState, error) {
	select {
	case st, ok := <-ch:
		if !ok {
			return nil, nil
		}
		return st, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func copyGray(dst, src *image.Gray) {
	if cap(dst.Pix) < len(src.Pix) {
		dst.Pix = make([]byte, len(src.Pix))
	}
	dst.Pix = dst.Pix[:len(src.Pix)]
	copy(dst.Pix, src.Pix)
	dst.Stride = src.Stride
	dst.Rect = src.Rect
}
