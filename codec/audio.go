package codec

import (
	"math"
	"sync"
	"time"

	"github.com/asticode/go-astiav"
)

// AudioTrack is the audio stream of an input, kept compressed so a Writer
// can copy it into its output unchanged.
type AudioTrack struct {
	parameters *astiav.CodecParameters
	timeBase   astiav.Rational

	mu      sync.Mutex
	queue   []*astiav.Packet
	free    []*astiav.Packet
	start   float64 // seconds at which the video starts; audio is timed from there
	started bool
}

func newAudioTrack(s *astiav.Stream) *AudioTrack {
	parameters := astiav.AllocCodecParameters()
	s.CodecParameters().Copy(parameters)
	return &AudioTrack{parameters: parameters, timeBase: s.TimeBase()}
}

// push queues a copy of an audio packet read from the input.
func (a *AudioTrack) push(p *astiav.Packet) error {
	a.mu.Lock()
	defer a.mu.Unlock()

	var copy *astiav.Packet
	if n := len(a.free); n > 0 {
		copy, a.free = a.free[n-1], a.free[:n-1]
	} else {
		copy = astiav.AllocPacket()
	}
	if err := copy.Ref(p); err != nil {
		a.free = append(a.free, copy)
		return err
	}
	a.queue = append(a.queue, copy)
	return nil
}

// setStart records the presentation time of the first video frame, in
// seconds: the output's time zero.
func (a *AudioTrack) setStart(seconds float64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.started {
		a.start, a.started = seconds, true
	}
}

// drain hands every queued packet that starts before until (relative to the
// first video frame) to write, with its timestamps shifted so that the first
// video frame is time zero. Packets that end before time zero are dropped,
// unless they are priming packets.
func (a *AudioTrack) drain(until time.Duration, write func(*astiav.Packet) error) error {
	a.mu.Lock()
	defer a.mu.Unlock()

	shift := int64(math.Round(a.start * float64(a.timeBase.Den()) / float64(a.timeBase.Num())))
	limit := until.Seconds()
	base := float64(a.timeBase.Num()) / float64(a.timeBase.Den())

	sent := 0
	for _, p := range a.queue {
		if float64(p.Pts()-shift)*base >= limit {
			break
		}
		sent++

		// Keep a packet that ends after time zero, and the encoder's priming
		// packets, which are marked for discarding and so play no sound.
		var err error
		if p.Pts()-shift+p.Duration() > 0 || p.Flags().Has(astiav.PacketFlagDiscard) {
			p.SetPts(p.Pts() - shift)
			p.SetDts(p.Dts() - shift)
			err = write(p)
		}
		p.Unref()
		a.free = append(a.free, p)
		if err != nil {
			a.queue = a.queue[sent:]
			return err
		}
	}
	a.queue = a.queue[sent:]
	return nil
}

// Close frees the queued packets and the codec parameters.
func (a *AudioTrack) Close() {
	a.mu.Lock()
	defer a.mu.Unlock()

	for _, p := range append(a.queue, a.free...) {
		p.Free()
	}
	a.queue, a.free = nil, nil
	if a.parameters != nil {
		a.parameters.Free()
		a.parameters = nil
	}
}
