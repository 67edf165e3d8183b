// Package stream runs the real-time loop: a ring buffer of preallocated
// frames between the decoder and the processor, keyframe inference with
// optical-flow propagation between keyframes, and the sinks that receive the
// results.
package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/medvseg/medvseg/codec"
)

// Policy selects what the producer does when the ring is full.
type Policy int

const (
	// Block makes the producer wait for a free slot, so no frame is lost:
	// the policy for files.
	Block Policy = iota
	// DropOldest hands the producer the oldest frame that the consumer has
	// not taken yet, and counts it as dropped: the policy for live sources,
	// where a late frame is worth less than a current one.
	DropOldest
)

func (p Policy) String() string {
	switch p {
	case Block:
		return "block"
	case DropOldest:
		return "drop-oldest"
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// ErrInvalidCapacity is returned by NewRing for a capacity below MinCapacity.
var ErrInvalidCapacity = errors.New("invalid ring capacity")

// ErrClosed is returned to a producer that acquires a slot after Close.
var ErrClosed = errors.New("ring closed")

// MinCapacity is the smallest ring: one slot for the producer to fill, one
// for the consumer to hold.
const MinCapacity = 2

// Slot is one preallocated frame of a Ring with its per-frame record. The
// ring owns the slot; the producer may write it between Acquire and
// Publish, the consumer may read it between Next and Release.
type Slot struct {
	Frame codec.Frame
	Times Timestamps
}

// Ring is a fixed-capacity single-producer single-consumer queue of
// preallocated frames, delivered in the order they are published. Slots
// circulate through two channels, so no operation allocates.
type Ring struct {
	free   chan *Slot
	ready  chan *Slot
	policy Policy

	dropped atomic.Uint64
	closed  atomic.Bool
}

// NewRing allocates capacity frames of width x height.
func NewRing(capacity, width, height int, policy Policy) (*Ring, error) {
	if capacity < MinCapacity {
		return nil, fmt.Errorf("%w %d: use %d or more slots", ErrInvalidCapacity, capacity, MinCapacity)
	}

	r := &Ring{policy: policy, free: make(chan *Slot, capacity), ready: make(chan *Slot, capacity)}
	for i := 0; i < capacity; i++ {
		r.free <- &Slot{Frame: *codec.NewFrame(width, height)}
	}

	return r, nil
}

// Acquire returns a slot for the producer to fill. With Block it waits for
// a free slot. With DropOldest and no free slot it takes back the oldest
// published frame and counts it as dropped. It returns ErrClosed after Close
// and the context's error when ctx ends first.
func (r *Ring) Acquire(ctx context.Context) (*Slot, error) {
	if r.closed.Load() {
		return nil, ErrClosed
	}

	select {
	case s := <-r.free:
		return s, nil
	default:
	}

	if r.policy == DropOldest {
		select {
		case s := <-r.free:
			return s, nil
		case s := <-r.ready:
			r.dropped.Add(1)
			return s, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}

	select {
	case s := <-r.free:
		return s, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Publish hands a filled slot to the consumer. It never blocks: the slot
// came from this ring, so the ready channel has room for it.
func (r *Ring) Publish(s *Slot) {
	r.ready <- s
}

// Abandon returns an acquired slot unpublished, for example when decoding failed.
func (r *Ring) Abandon(s *Slot) {
	r.free <- s
}

// Next returns the oldest published frame, waiting for one. It returns
// io.EOF once the ring is closed and drained, and the context's error when
// ctx ends first.
func (r *Ring) Next(ctx context.Context) (*Slot, error) {
	select {
	case s, ok := <-r.ready:
		if !ok {
			return nil, io.EOF
		}
		return s, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Release gives a slot taken with Next back to the producer.
func (r *Ring) Release(s *Slot) {
	r.free <- s
}

// Close marks the end of input. Only the producer calls it, once, after its
// last Publish: the consumer then drains what was published and gets io.EOF.
func (r *Ring) Close() {
	if r.closed.CompareAndSwap(false, true) {
		close(r.ready)
	}
}

// Dropped returns the number of frames DropOldest discarded.
func (r *Ring) Dropped() uint64 { return r.dropped.Load() }

// Capacity returns the number of slots.
func (r *Ring) Capacity() int { return cap(r.free) }
