package stream

import (
	"errors"
	"io"
	"testing"

	"github.com/medvseg/medvseg/codec"
)

func TestPacerStatus(t *testing.T) {
	const url = "lavfi:testsrc2=size=160x120:rate=25:duration=0.2"
	open := func() (Source, error) { return codec.Open(url, codec.ReaderOptions{}) }
	pacer, err := NewPacer(t.Context(), open, false)
	if err != nil {
		t.Fatal(err)
	}
	defer pacer.Close()

	if s := pacer.Status(); s.State != SourcePlaying {
		t.Errorf("state after open = %q, want %q", s.State, SourcePlaying)
	}

	var f codec.Frame
	frames := 0
	for {
		err := pacer.Read(&f)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read frame %d: %v", frames, err)
		}
		frames++
	}

	s := pacer.Status()
	if s.State != SourceEnded {
		t.Errorf("state at the end = %q, want %q", s.State, SourceEnded)
	}
	if s.LastError != "" {
		t.Errorf("last error at the end = %q, want none", s.LastError)
	}
	if s.URL != "testsrc2=size=160x120:rate=25:duration=0.2" {
		t.Errorf("status URL = %q, want the lavfi graph", s.URL)
	}
	if frames != 5 {
		t.Errorf("frames = %d, want 5", frames)
	}
}
