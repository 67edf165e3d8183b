package web

import (
	"path/filepath"
	"testing"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/codec/synth"
)

// TestStampSurvivesEncoding draws stamps on the synthetic clip, encodes it
// with the real-time H.264 settings at a low bit rate, decodes the file and
// reads every stamp back.
func TestStampSurvivesEncoding(t *testing.T) {
	const width, height, frames = 320, 240, 60
	layout, err := newStampLayout(width, height)
	if err != nil {
		t.Fatal(err)
	}
	scene, err := synth.NewScene(synth.Options{Width: width, Height: height, Frames: frames, FPS: 25, RandomSeed: 3})
	if err != nil {
		t.Fatal(err)
	}

	options, err := codec.RealtimeEncoderOptions(codec.CodecH264, width, height, 25, 150_000)
	if err != nil {
		t.Fatal(err)
	}
	options.GlobalHeader = true
	path := filepath.Join(t.TempDir(), "stamped.mp4")
	writer, err := codec.Create(path, codec.WriterOptions{EncoderOptions: options})
	if err != nil {
		t.Fatal(err)
	}
	frame := codec.NewFrame(width, height)
	// Frame numbers past 2^16 check that the stamp wraps.
	const firstIndex = 1<<16 - 20
	for i := 0; i < frames; i++ {
		scene.Render(i, frame, nil)
		layout.draw(frame, firstIndex+i)
		if err := writer.Write(frame); err != nil {
			t.Fatal(err)
		}
	}
	if err := writer.Close(); err != nil {
		t.Fatal(err)
	}

	reader, err := codec.Open(path, codec.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	for i := 0; i < frames; i++ {
		if err := reader.Read(frame); err != nil {
			t.Fatalf("read frame %d: %v", i, err)
		}
		value, ok := layout.read(frame)
		if !ok {
			t.Errorf("frame %d: stamp unreadable after encoding", i)
			continue
		}
		if want := stampValue(firstIndex + i); value != want {
			t.Errorf("frame %d: stamp reads %d, expected %d", i, value, want)
		}
	}
}

func TestStampLayoutRejectsTinyFrames(t *testing.T) {
	if _, err := newStampLayout(100, 80); err == nil {
		t.Error("a 100x80 frame was accepted, expected an error: the stamp needs 152 pixels of width")
	}
	layout, err := newStampLayout(1920, 1080)
	if err != nil {
		t.Fatal(err)
	}
	if layout.Cell != 24 {
		t.Errorf("cell of %d pixels at 1920x1080, expected 24", layout.Cell)
	}
}
