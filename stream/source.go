package stream

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/medvseg/medvseg/codec"
)

// Source delivers decoded frames; *codec.Reader is one.
type Source interface {
	// Read decodes the next frame into f and returns io.EOF after the last.
	Read(f *codec.Frame) error
	// Info describes the frames Read delivers.
	Info() codec.Info
}

// Produce decodes frames from src into ring slots until the source ends, an
// error occurs or ctx ends. It closes the ring when it returns, so the
// consumer receives the end of input. The end of the source returns nil.
//
// A file's frame counts as captured when its decoding starts. A live
// source's frame is captured when Read returns it, so its capture and decode
// times are the same. onFrame, when not nil, is called for each frame
// published.
func Produce(ctx context.Context, src Source, ring *Ring, live bool, onFrame func()) error {
	defer ring.Close()

	for {
		slot, err := ring.Acquire(ctx)
		if err != nil {
			return err
		}

		slot.Times.Reset()
		slot.Times.Captured = time.Now()
		err = src.Read(&slot.Frame)
		if errors.Is(err, io.EOF) {
			ring.Abandon(slot)
			return nil
		}
		if err != nil {
			ring.Abandon(slot)
			return err
		}

		slot.Times.Decoded = time.Now()
		if live {
			slot.Times.Captured = slot.Times.Decoded
		}
		if onFrame != nil {
			onFrame()
		}
		ring.Publish(slot)
	}
}
