package stream

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/segment"
)

// liveRingCapacity is the default ring size of the live loop. Every queued
// frame adds one frame time of delay, so the live loop keeps the queue short
// and drops the oldest frame instead.
const liveRingCapacity = 3

// liveLatencyWindow is the number of recent frames that LiveStats.Latency
// summarises: about 10 s at 30 fps.
const liveLatencyWindow = 300

// MaxKeyframeInterval is the largest keyframe interval: about 8 s at 30 fps.
// Flow carries a mask that long only on a still scene, and a larger value
// would leave the model idle for good.
const MaxKeyframeInterval = 250

// LiveSettings are the settings of a LiveProcessor that may change while it
// runs. Each frame uses the settings in effect when its processing starts.
type LiveSettings struct {
	// Overlay turns drawing the mask on the frames on or off.
	Overlay bool
	// Opacity of the overlay fill, in [0, 1].
	Opacity float64
	// Threshold is the probability above which a pixel is lesion, in (0, 1).
	Threshold float64
	// KeyframeInterval starts an inference every N frames, or as soon as
	// the model is free when it takes longer than N frames.
	KeyframeInterval int
}

// Validate checks each setting and names the one at fault.
func (s LiveSettings) Validate() error {
	if !(s.Opacity >= 0 && s.Opacity <= 1) {
		return fmt.Errorf("invalid opacity %v: use a value in [0, 1]", s.Opacity)
	}
	if !(s.Threshold > 0 && s.Threshold < 1) {
		return fmt.Errorf("invalid threshold %v: use a probability between 0 and 1", s.Threshold)
	}
	if s.KeyframeInterval < 1 || s.KeyframeInterval > MaxKeyframeInterval {
		return fmt.Errorf("invalid keyframe interval %d: use 1 (every frame) to %d", s.KeyframeInterval,
			MaxKeyframeInterval)
	}
	return nil
}

// LiveStats is a snapshot of a running LiveProcessor.
type LiveStats struct {
	// InputFrames counts frames read from the source.
	InputFrames uint64
	// OutputFrames counts frames handed to the sinks.
	OutputFrames uint64
	// Keyframes counts model results applied to a frame.
	Keyframes uint64
	// Dropped counts frames the ring discarded because the loop fell behind.
	Dropped uint64
	// InputFPS, OutputFPS and KeyframeRate are per second over the last
	// second or so of wall time.
	InputFPS     float64
	OutputFPS    float64
	KeyframeRate float64
	// Latency summarises each stage's delay after capture over recent frames.
	Latency map[Stage]LatencySummary
}

// LiveProcessor is the real-time loop for live video. Unlike Processor,
// no frame waits for the model: a frame goes out as soon as the previous
// mask is warped onto it. The model works on one keyframe at a time. While
// it works, the loop composes the optical flows of the frames that follow
// the keyframe. When the result lands, it is warped along that composed
// flow straight onto the current frame. The source is read into a ring with
// the DropOldest policy, so a loop that falls behind loses old frames, which
// it counts, rather than adding delay.
//
// Result.Keyframe is true on the frame where a model result was applied,
// which is later than the frame the model ran on when inference took
// longer than a frame.
//
// NOTE: the live loop chooses keyframes by interval only; it does not run
// the drift checks of Options.Drift.
type LiveProcessor struct {
	options   Options
	segmenter Segmenter
	flow      segment.FlowEstimator
	warper    segment.Warper
	overlay   *segment.Overlay
	opacity   float64 // the opacity overlay was made with

	mu       sync.Mutex
	settings LiveSettings
	rates    liveRates

	latency   *LatencyWindow
	input     atomic.Uint64
	output    atomic.Uint64
	keyframes atomic.Uint64
	ring      atomic.Pointer[Ring]
}

// liveRates are the frame rates measured over the last window.
type liveRates struct {
	start                             time.Time
	input, output, keyframes          uint64
	inputFPS, outputFPS, keyframeRate float64
}

// liveJob is the keyframe the model works on, with its result.
type liveJob struct {
	frame  codec.Frame
	result segment.Map
	ok     bool
	err    error
}

// liveState is the working memory of the loop goroutine.
type liveState struct {
	previous    codec.Frame
	hasPrevious bool
	backward    segment.FlowField // from the current frame to the previous one
	hasFlow     bool

	prob    segment.Map // the current frame's probability map
	scratch segment.Map
	hasProb bool
	applied bool // a model result was applied to the current frame
	mask    image.Gray

	job           *liveJob
	pending       bool              // the model is working on job
	stale         bool              // the pending result can no longer be carried forward
	toKeyframe    segment.FlowField // from the current frame to the pending keyframe
	sinceKeyframe int               // frames since the last inference started
}

// NewLiveProcessor prepares the live loop around a segmenter. Of options,
// it uses KeyframeInterval, Flow, Threshold, Overlay and RingCapacity
// (default 3 here). The overlay's opacity and the other LiveSettings start
// from options and may be changed with SetSettings.
func NewLiveProcessor(segmenter Segmenter, options Options) (*LiveProcessor, error) {
	if options.RingCapacity == 0 {
		options.RingCapacity = liveRingCapacity
	}
	options, err := options.withDefaults()
	if err != nil {
		return nil, err
	}

	flow, overlay, err := newFlowAndOverlay(options)
	if err != nil {
		return nil, err
	}

	return &LiveProcessor{
		options:   options,
		segmenter: segmenter,
		flow:      flow,
		overlay:   overlay,
		opacity:   options.Overlay.Opacity,
		settings: LiveSettings{
			Overlay:          true,
			Opacity:          options.Overlay.Opacity,
			Threshold:        options.Threshold,
			KeyframeInterval: options.KeyframeInterval,
		},
		latency: NewLatencyWindow(liveLatencyWindow),
	}, nil
}

// Settings returns the settings in effect.
func (p *LiveProcessor) Settings() LiveSettings {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.settings
}

// SetSettings replaces the settings from the next frame on. Invalid
// settings are rejected and leave the current ones in effect.
func (p *LiveProcessor) SetSettings(s LiveSettings) error {
	if err := s.Validate(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.settings = s
	return nil
}

// Stats returns counters, rates and recent latencies. The rates fall to
// zero while no frames arrive, as when the source is reconnecting.
func (p *LiveProcessor) Stats() LiveStats {
	p.updateRates()
	s := LiveStats{
		InputFrames:  p.input.Load(),
		OutputFrames: p.output.Load(),
		Keyframes:    p.keyframes.Load(),
		Latency:      p.latency.Summary(),
	}
	if ring := p.ring.Load(); ring != nil {
		s.Dropped = ring.Dropped()
	}

	p.mu.Lock()
	s.InputFPS, s.OutputFPS, s.KeyframeRate = p.rates.inputFPS, p.rates.outputFPS, p.rates.keyframeRate
	p.mu.Unlock()
	return s
}

// Run processes src until it ends or ctx is cancelled, handing each frame's
// result to the sinks in order, and closes the sinks. Cancelling ctx is the
// normal way to stop: Run then returns nil and closes the sinks with a nil
// cause. A LiveProcessor runs one source at a time.
func (p *LiveProcessor) Run(ctx context.Context, src Source, sinks ...Sink) error {
	err := p.run(ctx, src, sinks)
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		err = nil
	}

	for _, sink := range sinks {
		if closeErr := sink.Close(err); closeErr != nil && err == nil {
			err = closeErr
		}
	}
	return err
}

func (p *LiveProcessor) run(ctx context.Context, src Source, sinks []Sink) error {
	info := src.Info()
	ring, err := NewRing(p.options.RingCapacity, info.Width, info.Height, DropOldest)
	if err != nil {
		return err
	}
	p.ring.Store(ring)

	jobs := make(chan *liveJob, 1)
	results := make(chan *liveJob, 1)

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return Produce(ctx, src, ring, true, func() { p.input.Add(1) }) })
	g.Go(func() error { return p.infer(ctx, jobs, results) })
	g.Go(func() error {
		err := p.loop(ctx, ring, jobs, results, sinks)
		close(jobs)
		return err
	})
	return g.Wait()
}

// infer runs the segmenter on each job and hands it back.
func (p *LiveProcessor) infer(ctx context.Context, jobs <-chan *liveJob, results chan<- *liveJob) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case job, ok := <-jobs:
			if !ok {
				return nil
			}
			job.ok, job.err = p.segmenter.Segment(&job.frame, &job.result)
			select {
			case results <- job:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

// loop gives every frame its mask, draws the overlay and feeds the sinks.
func (p *LiveProcessor) loop(ctx context.Context, ring *Ring, jobs chan<- *liveJob, results <-chan *liveJob,
	sinks []Sink) error {
	st := &liveState{job: &liveJob{}}
	defer st.backward.Close()
	defer st.toKeyframe.Close()

	for {
		slot, err := ring.Next(ctx)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}

		settings := p.Settings()
		if err := p.segmentFrame(ctx, st, &slot.Frame, settings, jobs, results); err != nil {
			return err
		}
		slot.Times.Segmented = time.Now()

		// The next flow needs this frame as captured, before the overlay is drawn on it.
		st.previous.CopyFrom(&slot.Frame)
		st.hasPrevious = true

		if err := p.render(st, slot, settings, st.applied, sinks); err != nil {
			return err
		}
		ring.Release(slot)
		p.updateRates()
	}
}

// segmentFrame propagates the previous map onto frame, applies a model
// result that landed, and starts the next inference when one is due.
func (p *LiveProcessor) segmentFrame(ctx context.Context, st *liveState, frame *codec.Frame,
	settings LiveSettings, jobs chan<- *liveJob, results <-chan *liveJob) error {
	st.applied = false
	if err := p.propagate(st, frame); err != nil {
		return err
	}

	select {
	case job := <-results:
		if err := p.apply(st, job, frame); err != nil {
			return err
		}
	default:
	}

	st.sinceKeyframe++
	if st.pending {
		return nil
	}
	if st.hasProb && st.sinceKeyframe < settings.KeyframeInterval {
		return nil
	}
	return p.startInference(ctx, st, frame, jobs)
}

// propagate warps the previous map onto frame along the flow between them,
// and extends the flow to the pending keyframe by this frame's step.
func (p *LiveProcessor) propagate(st *liveState, frame *codec.Frame) error {
	st.hasFlow = false
	if st.hasPrevious && st.previous.Width == frame.Width && st.previous.Height == frame.Height {
		if err := p.flow.Compute(frame, &st.previous, &st.backward); err != nil {
			return fmt.Errorf("flow to frame %d: %w", frame.Index+1, err)
		}
		st.hasFlow = true
	}

	if !st.hasFlow || !st.hasProb {
		st.hasProb = false
		st.prob.Resize(frame.Width, frame.Height)
		clear(st.prob.Pix)
	} else {
		if err := p.warper.WarpMap(&st.prob, &st.backward, &st.scratch); err != nil {
			return fmt.Errorf("propagate to frame %d: %w", frame.Index+1, err)
		}
		st.prob, st.scratch = st.scratch, st.prob
	}

	if !st.pending || st.stale {
		return nil
	}
	if !st.hasFlow {
		st.stale = true
		return nil
	}
	// toKeyframe goes from the previous frame to the keyframe; prefixing
	// this frame's step makes it go from this frame to the keyframe.
	if err := p.warper.Compose(&st.backward, &st.toKeyframe, &st.toKeyframe); err != nil {
		return fmt.Errorf("compose flow from frame %d to its keyframe: %w", frame.Index+1, err)
	}
	return nil
}

// apply carries a model result forward onto frame along the composed flow.
func (p *LiveProcessor) apply(st *liveState, job *liveJob, frame *codec.Frame) error {
	st.pending = false
	if job.err != nil {
		return job.err
	}
	if !job.ok || st.stale {
		return nil
	}
	if job.result.Width != frame.Width || job.result.Height != frame.Height {
		return fmt.Errorf("segment keyframe %d: map %dx%d does not match frame %dx%d",
			job.frame.Index+1, job.result.Width, job.result.Height, frame.Width, frame.Height)
	}

	if err := p.warper.WarpMap(&job.result, &st.toKeyframe, &st.prob); err != nil {
		return fmt.Errorf("carry keyframe %d forward to frame %d: %w", job.frame.Index+1, frame.Index+1, err)
	}
	st.hasProb, st.applied = true, true
	p.keyframes.Add(1)
	return nil
}

// startInference hands a copy of frame to the model and resets the flow to
// the keyframe to zero.
func (p *LiveProcessor) startInference(ctx context.Context, st *liveState, frame *codec.Frame,
	jobs chan<- *liveJob) error {
	st.job.frame.CopyFrom(frame)
	st.toKeyframe.Resize(frame.Width, frame.Height)
	st.toKeyframe.Fill(0, 0)
	st.pending, st.stale = true, false
	st.sinceKeyframe = 0

	select {
	case jobs <- st.job:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// render thresholds the map, draws the overlay and hands the result to the sinks.
func (p *LiveProcessor) render(st *liveState, slot *Slot, settings LiveSettings, keyframe bool, sinks []Sink) error {
	st.prob.Threshold(settings.Threshold, &st.mask)
	if settings.Overlay {
		if err := p.drawOverlay(&slot.Frame, &st.mask, settings.Opacity); err != nil {
			return err
		}
	}
	slot.Times.Rendered = time.Now()

	result := Result{Frame: &slot.Frame, Mask: &st.mask, Probability: &st.prob, Keyframe: keyframe, Times: &slot.Times}
	for _, sink := range sinks {
		if err := sink.Write(&result); err != nil {
			return err
		}
	}
	slot.Times.Encoded = time.Now()
	p.latency.Record(&slot.Times)
	p.output.Add(1)
	return nil
}

// drawOverlay draws mask on frame, remaking the overlay when the opacity changed.
func (p *LiveProcessor) drawOverlay(frame *codec.Frame, mask *image.Gray, opacity float64) error {
	if opacity != p.opacity {
		o := p.options.Overlay
		o.Opacity = opacity
		overlay, err := segment.NewOverlay(o)
		if err != nil {
			return err
		}
		p.overlay.Close()
		p.overlay, p.opacity = overlay, opacity
	}

	if err := p.overlay.Draw(frame, mask); err != nil {
		return fmt.Errorf("overlay frame %d: %w", frame.Index+1, err)
	}
	return nil
}

// updateRates recomputes the frame rates once a second of wall time has passed.
func (p *LiveProcessor) updateRates() {
	now := time.Now()
	input, output, keyframes := p.input.Load(), p.output.Load(), p.keyframes.Load()

	p.mu.Lock()
	defer p.mu.Unlock()

	r := &p.rates
	if r.start.IsZero() {
		r.start, r.input, r.output, r.keyframes = now, input, output, keyframes
		return
	}
	elapsed := now.Sub(r.start).Seconds()
	if elapsed < 1 {
		return
	}

	r.inputFPS = float64(input-r.input) / elapsed
	r.outputFPS = float64(output-r.output) / elapsed
	r.keyframeRate = float64(keyframes-r.keyframes) / elapsed
	r.start, r.input, r.output, r.keyframes = now, input, output, keyframes
}

// Close releases the flow, warp and overlay resources.
func (p *LiveProcessor) Close() error {
	p.warper.Close()
	p.overlay.Close()
	return p.flow.Close()
}
