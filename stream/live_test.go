package stream

import (
	"context"
	"image"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/segment"
)

const (
	shiftWidth  = 160
	shiftHeight = 120
	shiftStep   = 3  // pixels the content moves right per frame
	squareSide  = 24 // side of the lesion square
	squareX     = 40 // left edge of the square in frame 0
	squareY     = 48
)

// shiftingSource delivers a smooth random texture that moves shiftStep
// pixels right per frame. With gate set, frame i > 0 is read only after
// the sink received frame i-1, so no frame is dropped.
type shiftingSource struct {
	texture []byte // grey, (shiftWidth + frames*shiftStep) x shiftHeight
	stride  int
	frames  int
	next    int
	gate    chan struct{}
}

func newShiftingSource(frames int, gated bool) *shiftingSource {
	rng := rand.New(rand.NewPCG(1, 2))
	stride := shiftWidth + frames*shiftStep
	const cell = 6
	cols, rows := stride/cell+2, shiftHeight/cell+2
	grid := make([]float64, cols*rows)
	for i := range grid {
		grid[i] = rng.Float64() * 255
	}

	texture := make([]byte, stride*shiftHeight)
	for y := 0; y < shiftHeight; y++ {
		for x := 0; x < stride; x++ {
			gx, gy := float64(x)/cell, float64(y)/cell
			x0, y0 := int(gx), int(gy)
			fx, fy := gx-float64(x0), gy-float64(y0)
			at := func(i, j int) float64 { return grid[(y0+j)*cols+x0+i] }
			v := (1-fy)*((1-fx)*at(0, 0)+fx*at(1, 0)) + fy*((1-fx)*at(0, 1)+fx*at(1, 1))
			texture[y*stride+x] = byte(v)
		}
	}

	s := &shiftingSource{texture: texture, stride: stride, frames: frames}
	if gated {
		s.gate = make(chan struct{}, 1)
	}
	return s
}

// Read renders frame i: texture column c appears at x = c - origin + shiftStep*i,
// so content moves right.
func (s *shiftingSource) Read(f *codec.Frame) error {
	if s.next >= s.frames {
		return io.EOF
	}
	if s.gate != nil && s.next > 0 {
		<-s.gate
	}

	f.Resize(shiftWidth, shiftHeight)
	origin := s.frames * shiftStep
	for y := 0; y < shiftHeight; y++ {
		for x := 0; x < shiftWidth; x++ {
			v := s.texture[y*s.stride+x+origin-shiftStep*s.next]
			p := 3 * (y*shiftWidth + x)
			f.Pix[p], f.Pix[p+1], f.Pix[p+2] = v, v, v
		}
	}
	f.Index = s.next
	f.PTS = time.Duration(s.next) * 40 * time.Millisecond
	s.next++
	return nil
}

func (s *shiftingSource) Info() codec.Info {
	return codec.Info{URL: "shifting", Width: shiftWidth, Height: shiftHeight, FrameRate: 25}
}

// squareMask returns the lesion square as it sits in frame index.
func squareMask(index int) *image.Gray {
	m := image.NewGray(image.Rect(0, 0, shiftWidth, shiftHeight))
	x0 := squareX + shiftStep*index
	for y := squareY; y < squareY+squareSide; y++ {
		for x := x0; x < x0+squareSide && x < shiftWidth; x++ {
			m.Pix[y*m.Stride+x] = 255
		}
	}
	return m
}

// squareSegmenter returns the square of each frame it is given, after
// waiting on release when it is set.
type squareSegmenter struct {
	release chan struct{}
	frames  []int
	mu      sync.Mutex
}

func (s *squareSegmenter) Segment(frame *codec.Frame, prob *segment.Map) (bool, error) {
	if s.release != nil {
		<-s.release
		s.release = nil
	}
	s.mu.Lock()
	s.frames = append(s.frames, frame.Index)
	s.mu.Unlock()

	mask := squareMask(frame.Index)
	prob.Resize(frame.Width, frame.Height)
	for i, v := range mask.Pix {
		prob.Pix[i] = float32(v) / 255
	}
	return true, nil
}

// recordingSink keeps a copy of each mask and calls onWrite after each frame.
type recordingSink struct {
	indices   []int
	keyframes []bool
	masks     []*image.Gray
	delay     time.Duration
	onWrite   func(index int)
	closed    bool
}

func (s *recordingSink) Write(r *Result) error {
	mask := image.NewGray(r.Mask.Rect)
	copy(mask.Pix, r.Mask.Pix)
	s.indices = append(s.indices, r.Frame.Index)
	s.keyframes = append(s.keyframes, r.Keyframe)
	s.masks = append(s.masks, mask)
	time.Sleep(s.delay)
	if s.onWrite != nil {
		s.onWrite(r.Frame.Index)
	}
	return nil
}

func (s *recordingSink) Close(cause error) error {
	s.closed = true
	return nil
}

func iou(t *testing.T, a, b *image.Gray) float64 {
	t.Helper()
	v, err := segment.IoU(a, b)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func newTestLiveProcessor(t *testing.T, segmenter Segmenter, interval int) *LiveProcessor {
	t.Helper()
	p, err := NewLiveProcessor(segmenter, Options{
		KeyframeInterval: interval,
		Flow:             segment.FlowOptions{Method: segment.FlowDISMedium, Scale: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestLiveCarriesResultForward(t *testing.T) {
	const frames, landAfter = 14, 5
	src := newShiftingSource(frames, true)
	segmenter := &squareSegmenter{release: make(chan struct{})}
	p := newTestLiveProcessor(t, segmenter, MaxKeyframeInterval)
	// A solid overlay would mislead the flow if the loop kept the drawn
	// frame, not the captured one, as the previous frame.
	settings := p.Settings()
	settings.Opacity = 1
	if err := p.SetSettings(settings); err != nil {
		t.Fatal(err)
	}

	sink := &recordingSink{onWrite: func(index int) {
		// The model finishes keyframe 0 only once frame landAfter went out.
		if index == landAfter {
			close(segmenter.release)
		}
		src.gate <- struct{}{}
	}}

	if err := p.Run(context.Background(), src, sink); err != nil {
		t.Fatal(err)
	}
	if !sink.closed {
		t.Error("sink was not closed")
	}
	if len(segmenter.frames) != 1 || segmenter.frames[0] != 0 {
		t.Fatalf("model ran on frames %v, expected only frame 0 with a keyframe interval of 1000", segmenter.frames)
	}

	landed := -1
	for i, keyframe := range sink.keyframes {
		if keyframe {
			landed = i
			break
		}
	}
	if landed <= landAfter {
		t.Fatalf("result applied at output %d (keyframes %v), expected after frame %d", landed, sink.keyframes, landAfter)
	}

	index := sink.indices[landed]
	got := sink.masks[landed]
	if v := iou(t, got, squareMask(index)); v < 0.8 {
		t.Errorf("frame %d: IoU %.2f with the square where it is now, expected at least 0.8: "+
			"the result was not carried forward along the flow", index, v)
	}
	if v := iou(t, got, squareMask(0)); v > 0.5 {
		t.Errorf("frame %d: IoU %.2f with the square where it was at keyframe 0, expected it to have moved", index, v)
	}

	last := len(sink.masks) - 1
	if v := iou(t, sink.masks[last], squareMask(sink.indices[last])); v < 0.8 {
		t.Errorf("last frame %d: IoU %.2f after propagation, expected at least 0.8", sink.indices[last], v)
	}
	for i := 0; i < landed; i++ {
		if n := countForeground(sink.masks[i]); n != 0 {
			t.Errorf("frame %d: %d mask pixels before any result landed, expected none", sink.indices[i], n)
		}
	}
}

func TestLiveCountsDrops(t *testing.T) {
	const frames = 40
	src := newShiftingSource(frames, false)
	p := newTestLiveProcessor(t, &squareSegmenter{}, 5)
	sink := &recordingSink{delay: 10 * time.Millisecond}

	if err := p.Run(context.Background(), src, sink); err != nil {
		t.Fatal(err)
	}

	stats := p.Stats()
	if stats.InputFrames != frames {
		t.Errorf("input frames %d, expected %d", stats.InputFrames, frames)
	}
	if stats.Dropped == 0 {
		t.Error("no frame dropped although the sink is slower than the source")
	}
	if stats.OutputFrames+stats.Dropped != stats.InputFrames {
		t.Errorf("output %d + dropped %d != input %d: every frame must be either sent or counted as dropped",
			stats.OutputFrames, stats.Dropped, stats.InputFrames)
	}
	if int(stats.OutputFrames) != len(sink.indices) {
		t.Errorf("output frames %d, but the sink received %d", stats.OutputFrames, len(sink.indices))
	}
	for i := 1; i < len(sink.indices); i++ {
		if sink.indices[i] <= sink.indices[i-1] {
			t.Errorf("frame %d after frame %d: output out of order", sink.indices[i], sink.indices[i-1])
		}
	}
	if stats.Latency[StageEncoded].Count == 0 {
		t.Error("no latency recorded for the encoded stage")
	}
}

func TestLiveSettings(t *testing.T) {
	p := newTestLiveProcessor(t, &squareSegmenter{}, 5)

	valid := LiveSettings{Overlay: true, Opacity: 0.7, Threshold: 0.3, KeyframeInterval: 2}
	if err := p.SetSettings(valid); err != nil {
		t.Fatalf("valid settings rejected: %v", err)
	}
	if p.Settings() != valid {
		t.Errorf("settings %+v, expected %+v", p.Settings(), valid)
	}

	for name, s := range map[string]LiveSettings{
		"opacity above 1":   {Opacity: 1.5, Threshold: 0.5, KeyframeInterval: 1},
		"threshold 0":       {Opacity: 0.5, Threshold: 0, KeyframeInterval: 1},
		"threshold 1":       {Opacity: 0.5, Threshold: 1, KeyframeInterval: 1},
		"interval 0":        {Opacity: 0.5, Threshold: 0.5, KeyframeInterval: 0},
		"negative opacity":  {Opacity: -0.1, Threshold: 0.5, KeyframeInterval: 1},
		"negative interval": {Opacity: 0.5, Threshold: 0.5, KeyframeInterval: -3},
	} {
		if err := p.SetSettings(s); err == nil {
			t.Errorf("%s: accepted, expected an error", name)
		}
	}
	if p.Settings() != valid {
		t.Errorf("settings %+v after rejected updates, expected %+v unchanged", p.Settings(), valid)
	}
}

func TestLiveOverlayOff(t *testing.T) {
	src := newShiftingSource(6, true)
	p := newTestLiveProcessor(t, &squareSegmenter{}, 1)
	settings := p.Settings()
	settings.Overlay = false
	if err := p.SetSettings(settings); err != nil {
		t.Fatal(err)
	}

	reference := newShiftingSource(6, false)
	want := &codec.Frame{}
	mismatches := 0
	sink := &frameSink{check: func(f *codec.Frame) {
		reference.Read(want)
		for want.Index < f.Index {
			reference.Read(want)
		}
		for i := range f.Pix {
			if f.Pix[i] != want.Pix[i] {
				mismatches++
				break
			}
		}
		src.gate <- struct{}{}
	}}
	if err := p.Run(context.Background(), src, sink); err != nil {
		t.Fatal(err)
	}
	if mismatches != 0 {
		t.Errorf("%d frames changed with the overlay off, expected the input frames unchanged", mismatches)
	}
}

type frameSink struct{ check func(*codec.Frame) }

func (s *frameSink) Write(r *Result) error   { s.check(r.Frame); return nil }
func (s *frameSink) Close(cause error) error { return nil }

func TestLiveStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pacer, err := NewPacer(ctx, func() (Source, error) { return newShiftingSource(3, false), nil }, true)
	if err != nil {
		t.Fatal(err)
	}
	defer pacer.Close()

	p := newTestLiveProcessor(t, &squareSegmenter{}, 5)
	sink := &recordingSink{}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, pacer, sink) }()

	time.Sleep(300 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel: %v, expected nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5 s of cancel")
	}

	// 300 ms at 25 fps is about 8 frames, well past the 3 of one pass.
	if len(sink.indices) < 5 {
		t.Errorf("%d frames in 300 ms of a looping 25 fps source, expected about 8", len(sink.indices))
	}
	for i, index := range sink.indices {
		if i > 0 && index <= sink.indices[i-1] {
			t.Errorf("frame index %d after %d: the pacer must keep indices increasing across loops",
				index, sink.indices[i-1])
		}
	}
}

func countForeground(m *image.Gray) int {
	n := 0
	for _, v := range m.Pix {
		if v > 127 {
			n++
		}
	}
	return n
}
