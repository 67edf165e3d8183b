package web

import (
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/codec/synth"
	"github.com/medvseg/medvseg/stream"
)

// TestStalledViewerDoesNotBlock joins a viewer whose writer never runs
// next to a normal one: Write must keep returning, the stalled viewer must
// count its drops, and the normal one must lose nothing.
func TestStalledViewerDoesNotBlock(t *testing.T) {
	const width, height, frames = 160, 120, 60
	sink, err := NewVideoSink(codec.CodecVP8, width, height, 25, 300_000, SinkOptions{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close(nil)

	healthy, err := newViewer("healthy", sink.Codec(), nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	stalled := &viewer{id: "stalled", queue: make(chan viewerSample, viewerQueueLength), needKeyframe: true,
		logger: zerolog.Nop()}
	sink.join(healthy)
	sink.join(stalled)

	scene, err := synth.NewScene(synth.Options{Width: width, Height: height, Frames: frames, FPS: 25, RandomSeed: 2})
	if err != nil {
		t.Fatal(err)
	}
	frame := codec.NewFrame(width, height)
	times := stream.Timestamps{Captured: time.Now()}
	for i := 0; i < frames; i++ {
		scene.Render(i, frame, nil)
		if err := sink.Write(&stream.Result{Frame: frame, Times: &times}); err != nil {
			t.Fatalf("write frame %d: %v", i, err)
		}
		// The healthy viewer's writer runs between frames, as it would
		// between frames 40 ms apart.
		waitDrained(t, healthy)
	}

	if n := stalled.dropped.Load(); n == 0 {
		t.Error("the stalled viewer dropped no frames, expected drops once its queue filled")
	}
	if len(stalled.queue) != viewerQueueLength {
		t.Errorf("stalled viewer queue holds %d access units, expected it full at %d", len(stalled.queue),
			viewerQueueLength)
	}
	if n := healthy.dropped.Load(); n != 0 {
		t.Errorf("the healthy viewer dropped %d frames, expected 0", n)
	}
	if sink.Viewers() != 2 {
		t.Errorf("%d viewers, expected 2", sink.Viewers())
	}

	sink.leave(healthy)
	if sink.Viewers() != 1 {
		t.Errorf("%d viewers after one left, expected 1", sink.Viewers())
	}
	scene.Render(0, frame, nil)
	if err := sink.Write(&stream.Result{Frame: frame, Times: &times}); err != nil {
		t.Errorf("write after a viewer left: %v", err)
	}
}

// waitDrained waits until v's writer has taken every queued access unit.
func waitDrained(t *testing.T, v *viewer) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(v.queue) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("viewer %s still has %d queued access units after 10 s", v.id, len(v.queue))
		}
		time.Sleep(time.Millisecond)
	}
}

func TestLateViewerStartsOnKeyframe(t *testing.T) {
	const width, height = 160, 120
	sink, err := NewVideoSink(codec.CodecVP8, width, height, 25, 300_000, SinkOptions{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close(nil)
	scene, err := synth.NewScene(synth.Options{Width: width, Height: height, Frames: 40, FPS: 25, RandomSeed: 2})
	if err != nil {
		t.Fatal(err)
	}

	first, err := newViewer("first", sink.Codec(), nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	sink.join(first)
	frame := codec.NewFrame(width, height)
	times := stream.Timestamps{Captured: time.Now()}
	for i := 0; i < 20; i++ {
		scene.Render(i, frame, nil)
		if err := sink.Write(&stream.Result{Frame: frame, Times: &times}); err != nil {
			t.Fatal(err)
		}
		waitDrained(t, first)
	}

	// The late viewer's writer does not run, so its queue shows what it got.
	late := &viewer{id: "late", queue: make(chan viewerSample, viewerQueueLength), needKeyframe: true,
		logger: zerolog.Nop()}
	sink.join(late)
	scene.Render(20, frame, nil)
	if err := sink.Write(&stream.Result{Frame: frame, Times: &times}); err != nil {
		t.Fatal(err)
	}
	if len(late.queue) != 1 {
		t.Fatalf("late viewer got %d access units from the first frame after joining, expected 1", len(late.queue))
	}
	if sample := <-late.queue; !sample.keyframe {
		t.Errorf("late viewer's first access unit (frame %d) is not a keyframe", sample.index)
	}
}
