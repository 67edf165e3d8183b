package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/rs/zerolog/log"

	"github.com/medvseg/medvseg/codec"
)

// maxPacerLag is how far a Pacer may fall behind its clock before it
// restarts the clock at the current frame instead of delivering a burst of
// late frames.
const maxPacerLag = time.Second

// Pacer turns a recorded source into a live one: Read returns each frame
// when its PTS is due on the wall clock, counted from the first Read. With
// looping on, it reopens the source at its end and keeps the PTS and the
// frame index increasing across passes, so downstream the video never
// restarts. A Pacer is not safe for concurrent use, except for Status.
type Pacer struct {
	ctx  context.Context
	open func() (Source, error)
	loop bool

	src  Source
	info codec.Info

	start      time.Time     // wall time of PTS 0
	offset     time.Duration // added to the PTS of the current pass
	nextPTS    time.Duration // PTS the next pass starts at
	frameTime  time.Duration // nominal duration of one frame
	delivered  int           // frames returned so far, over all passes
	passFrames int           // frames returned in the current pass

	status statusTracker
}

// NewPacer opens the first pass with open. Read waits on ctx, so cancelling
// ctx ends a waiting Read with the context's error.
func NewPacer(ctx context.Context, open func() (Source, error), loop bool) (*Pacer, error) {
	src, err := open()
	if err != nil {
		return nil, err
	}

	info := src.Info()
	if info.FrameRate <= 0 {
		closeSource(src)
		return nil, fmt.Errorf("pace %q: unknown frame rate: give the input a frame rate", info.URL)
	}

	p := &Pacer{
		ctx:       ctx,
		open:      open,
		loop:      loop,
		src:       src,
		info:      info,
		frameTime: time.Duration(float64(time.Second) / info.FrameRate),
	}
	p.status.set(SourcePlaying, func(s *SourceStatus) { s.URL = info.URL })
	return p, nil
}

// Status returns SourcePlaying until Read returns an error, and then
// SourceEnded, with LastError set unless the source simply ended. It is
// safe for concurrent use.
func (p *Pacer) Status() SourceStatus { return p.status.snapshot() }

// Info describes the source; a looping Pacer has no end, so FrameCount and
// Duration are zero.
func (p *Pacer) Info() codec.Info {
	info := p.info
	if p.loop {
		info.FrameCount, info.Duration = 0, 0
	}
	return info
}

// Read waits until the next frame is due and decodes it into f.
func (p *Pacer) Read(f *codec.Frame) error {
	if err := p.readFrame(f); err != nil {
		p.status.set(SourceEnded, func(s *SourceStatus) {
			if !errors.Is(err, io.EOF) {
				s.LastError = err.Error()
			}
		})
		return err
	}

	f.PTS += p.offset
	f.Index = p.delivered
	p.delivered++
	p.passFrames++
	p.nextPTS = max(p.nextPTS, f.PTS+p.frameTime)

	return p.wait(f.PTS)
}

// readFrame reads the next frame of the current pass, starting a new pass
// at the end of the source when looping.
func (p *Pacer) readFrame(f *codec.Frame) error {
	err := p.src.Read(f)
	if !errors.Is(err, io.EOF) || !p.loop {
		return err
	}
	if p.passFrames == 0 {
		return fmt.Errorf("loop %q: the input has no frames", p.info.URL)
	}

	closeSource(p.src)
	p.src = nil
	src, err := p.open()
	if err != nil {
		return fmt.Errorf("loop %q: %w", p.info.URL, err)
	}

	p.src = src
	p.offset = p.nextPTS
	p.passFrames = 0
	return p.src.Read(f)
}

// wait sleeps until pts is due on the clock that the first frame started.
func (p *Pacer) wait(pts time.Duration) error {
	now := time.Now()
	if p.start.IsZero() {
		p.start = now.Add(-pts)
		return nil
	}

	delay := p.start.Add(pts).Sub(now)
	if delay < -maxPacerLag {
		log.Debug().Str("input", p.info.URL).Dur("lag", -delay).Msg("pacer fell behind; restarting its clock")
		p.start = now.Add(-pts)
		return nil
	}
	if delay <= 0 {
		return nil
	}

	timer := time.NewTimer(delay)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-p.ctx.Done():
		return p.ctx.Err()
	}
}

// Close closes the current source when it has a Close method.
func (p *Pacer) Close() error {
	if p.src == nil {
		return nil
	}
	err := closeSource(p.src)
	p.src = nil
	return err
}

func closeSource(src Source) error {
	if c, ok := src.(io.Closer); ok {
		return c.Close()
	}
	return nil
}
