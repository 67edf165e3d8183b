package stream

import (
	"context"
	"errors"
	"io"
	"testing"
)

func TestNewRingRejectsSmallCapacity(t *testing.T) {
	for _, capacity := range []int{-1, 0, 1} {
		if _, err := NewRing(capacity, 4, 4, Block); !errors.Is(err, ErrInvalidCapacity) {
			t.Errorf("capacity %d: error %v, expected ErrInvalidCapacity", capacity, err)
		}
	}
	r, err := NewRing(MinCapacity, 4, 2, Block)
	if err != nil {
		t.Fatal(err)
	}
	if r.Capacity() != MinCapacity {
		t.Errorf("capacity %d, expected %d", r.Capacity(), MinCapacity)
	}
}

func TestRingPreallocatesFrames(t *testing.T) {
	r, _ := NewRing(3, 8, 6, Block)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		s, err := r.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s.Frame.Width != 8 || s.Frame.Height != 6 || len(s.Frame.Pix) != 8*6*3 {
			t.Errorf("slot %d: frame %dx%d with %d bytes, expected 8x6 with 144", i, s.Frame.Width, s.Frame.Height, len(s.Frame.Pix))
		}
	}
}

func TestRingKeepsOrder(t *testing.T) {
	r, _ := NewRing(4, 2, 2, Block)
	ctx := context.Background()

	go func() {
		for i := 0; i < 100; i++ {
			s, err := r.Acquire(ctx)
			if err != nil {
				panic(err)
			}
			s.Frame.Index = i
			r.Publish(s)
		}
		r.Close()
	}()

	for want := 0; ; want++ {
		s, err := r.Next(ctx)
		if errors.Is(err, io.EOF) {
			if want != 100 {
				t.Fatalf("EOF after %d frames, expected 100", want)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if s.Frame.Index != want {
			t.Fatalf("frame %d delivered where %d was expected", s.Frame.Index, want)
		}
		r.Release(s)
	}
	if r.Dropped() != 0 {
		t.Errorf("Block policy dropped %d frames", r.Dropped())
	}
}

func TestRingBlockWaitsForRelease(t *testing.T) {
	r, _ := NewRing(2, 2, 2, Block)
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		s, _ := r.Acquire(ctx)
		r.Publish(s)
	}

	// The ring is full: Acquire must wait, so a cancelled context ends it.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := r.Acquire(cancelled); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire on a full ring: %v, expected it to wait until the context ended", err)
	}

	s, _ := r.Next(ctx)
	r.Release(s)
	if _, err := r.Acquire(ctx); err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
}

func TestRingDropOldest(t *testing.T) {
	r, _ := NewRing(3, 2, 2, DropOldest)
	ctx := context.Background()

	for i := 0; i < 5; i++ {
		s, err := r.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s.Frame.Index = i
		r.Publish(s)
	}
	r.Close()

	if r.Dropped() != 2 {
		t.Errorf("dropped %d frames, expected 2", r.Dropped())
	}
	for _, want := range []int{2, 3, 4} {
		s, err := r.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s.Frame.Index != want {
			t.Errorf("frame %d delivered, expected %d: the oldest frames go first", s.Frame.Index, want)
		}
	}
	if _, err := r.Next(ctx); !errors.Is(err, io.EOF) {
		t.Errorf("Next after drain: %v, expected io.EOF", err)
	}
}

func TestRingAcquireAfterClose(t *testing.T) {
	r, _ := NewRing(2, 2, 2, Block)
	r.Close()
	if _, err := r.Acquire(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Acquire after Close: %v, expected ErrClosed", err)
	}
}

func TestRingDoesNotAllocate(t *testing.T) {
	r, _ := NewRing(2, 64, 64, DropOldest)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	allocs := testing.AllocsPerRun(1000, func() {
		s, _ := r.Acquire(ctx)
		r.Publish(s)
		s, _ = r.Next(ctx)
		r.Release(s)
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per frame, expected 0", allocs)
	}
}
