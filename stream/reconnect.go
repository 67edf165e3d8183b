package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/rs/zerolog"
	"github.com/rs/zerolog/log"

	"github.com/medvseg/medvseg/codec"
)

// Defaults of ReconnectorOptions.
const (
	DefaultReconnectInitialDelay = 250 * time.Millisecond
	DefaultReconnectMaxDelay     = 4 * time.Second
	// DefaultReconnectFrameRate is the frame rate Info reports when the
	// source could not be opened at start and ReconnectorOptions.FrameRate
	// is zero.
	DefaultReconnectFrameRate = 30
)

// backoffResetAfter is how long a connection must deliver frames before
// its failure restarts the backoff from the initial delay. A source that
// fails right after each reopen keeps the longer delays.
const backoffResetAfter = 5 * time.Second

// ErrSizeUnknown is returned by NewReconnector when the first open fails
// and no frame size was given, so the frame size is unknown.
var ErrSizeUnknown = errors.New("frame size unknown")

// OpenFunc opens a live source that delivers frames of the given size, or
// of the source's own size when size is zero. The source ends its blocking
// calls once ctx ends.
type OpenFunc func(ctx context.Context, size codec.Size) (Source, error)

// ReconnectorOptions configures a Reconnector. The zero value uses the
// defaults.
type ReconnectorOptions struct {
	// URL names the input in logs and Status; user names and passwords in
	// it are removed there.
	URL string
	// Size is the frame size of every open. Zero takes the size of the
	// first open, which then must succeed.
	Size codec.Size
	// FrameRate is the rate in frames per second that Info reports when
	// the source could not be opened at start; zero means
	// DefaultReconnectFrameRate.
	FrameRate float64
	// InitialDelay is the backoff before the first reopen; zero means
	// DefaultReconnectInitialDelay.
	InitialDelay time.Duration
	// MaxDelay caps the backoff between reopens, before jitter of up to
	// 50% either way; zero means DefaultReconnectMaxDelay.
	MaxDelay time.Duration
}

// Reconnector keeps a live source going: when its Read fails or the source
// ends, it logs the error, closes the source and reopens it with
// exponential backoff and jitter. Read blocks meanwhile and returns only
// frames, the context's error, or an error that reopening cannot fix
// (codec.ErrInvalidOption, codec.ErrUnsupportedCodec).
//
// Every open gets the frame size of the first, so frames keep one size;
// a connection that delivers another size is closed and reopened. Frame
// indexes and PTS keep increasing across reopens: the PTS after a reopen
// continues from the wall time since the first frame. Frames are delivered
// as they arrive, without pacing. A Reconnector is not safe for concurrent
// use, except for Status.
type Reconnector struct {
	ctx     context.Context
	open    OpenFunc
	url     string // as given
	display string // url without credentials
	backoff *backoff.ExponentialBackOff
	logger  zerolog.Logger
	outages zerolog.Logger // sampled, for the start and end of each outage
	repeats zerolog.Logger // sampled, for failures that repeat during an outage

	src       Source
	info      codec.Info
	size      codec.Size
	frameTime time.Duration

	start       time.Time     // wall time of PTS 0
	offset      time.Duration // added to the PTS of the current connection
	lastPTS     time.Duration
	delivered   int       // frames returned so far, over all connections
	connected   time.Time // when the current connection delivered its first frame
	outageStart time.Time // when the current outage began, zero while playing
	attempts    int       // failed opens in the current outage
	played      bool      // a frame was delivered at least once
	lastMessage string    // the last logged error, to spot repeats

	status statusTracker
}

// NewReconnector opens the source for the first time. If that fails with an
// error that a reopen may fix, the result depends on options.Size. With a
// size, NewReconnector returns a Reconnector in the SourceReconnecting state
// that keeps retrying in Read. Without one, it returns an error wrapping
// ErrSizeUnknown, because Info cannot report a frame size.
func NewReconnector(ctx context.Context, open OpenFunc, options ReconnectorOptions) (*Reconnector, error) {
	options = options.withDefaults()
	r := &Reconnector{
		ctx:     ctx,
		open:    open,
		url:     options.URL,
		display: codec.RedactURL(options.URL),
		backoff: &backoff.ExponentialBackOff{
			InitialInterval:     options.InitialDelay,
			RandomizationFactor: backoff.DefaultRandomizationFactor,
			Multiplier:          2,
			MaxInterval:         options.MaxDelay,
		},
		size: options.Size,
	}
	r.backoff.Reset()
	r.logger = log.With().Str("input", r.display).Logger()
	r.outages = r.logger.Sample(&zerolog.BurstSampler{Burst: 10, Period: time.Minute})
	r.repeats = r.logger.Sample(&zerolog.BurstSampler{Burst: 1, Period: 30 * time.Second})
	r.status.set(SourceConnecting, func(s *SourceStatus) { s.URL = r.display })

	src, err := open(ctx, options.Size)
	if err == nil {
		r.connect(src)
		r.info = src.Info()
		r.info.URL = r.display
		return r, nil
	}

	err = r.redact(err)
	if ctx.Err() != nil || isPermanent(err) {
		r.status.set(SourceEnded, func(s *SourceStatus) { s.LastError = err.Error() })
		return nil, err
	}
	if options.Size.IsZero() {
		return nil, fmt.Errorf("%w: %w", err, ErrSizeUnknown)
	}

	// NOTE: a consumer that sets up an encoder from Info keeps this rate
	// even when the source comes up at another one.
	r.info = codec.Info{URL: r.display, Width: r.size.Width, Height: r.size.Height, FrameRate: options.FrameRate}
	r.frameTime = time.Duration(float64(time.Second) / r.info.FrameRate)
	r.outageStart = time.Now()
	r.fail(err)
	return r, nil
}

func (o ReconnectorOptions) withDefaults() ReconnectorOptions {
	if o.FrameRate <= 0 {
		o.FrameRate = DefaultReconnectFrameRate
	}
	if o.InitialDelay <= 0 {
		o.InitialDelay = DefaultReconnectInitialDelay
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = DefaultReconnectMaxDelay
	}
	return o
}

// Info describes the frames Read delivers. A live source has no end, so
// Duration and FrameCount are zero.
func (r *Reconnector) Info() codec.Info {
	info := r.info
	info.Duration, info.FrameCount = 0, 0
	return info
}

// Status returns the source's condition; it is safe for concurrent use.
func (r *Reconnector) Status() SourceStatus { return r.status.snapshot() }

// Read delivers the next frame into f, reopening the source as often as
// it takes.
func (r *Reconnector) Read(f *codec.Frame) error {
	for {
		if r.src == nil {
			if err := r.reopen(); err != nil {
				return err
			}
		}

		err := r.src.Read(f)
		if err == nil {
			err = r.checkSize(f)
		}
		if err == nil {
			r.deliver(f)
			return nil
		}

		err = r.redact(err)
		if final := r.stopOn(err); final != nil {
			return final
		}

		r.disconnect()
		r.fail(err)
	}
}

// Close closes the current source when it has a Close method.
func (r *Reconnector) Close() error {
	if r.src == nil {
		return nil
	}
	err := closeSource(r.src)
	r.src = nil
	return err
}

// connect makes src the current source. The first connection fixes the
// frame size and rate; later ones continue the PTS where the wall clock is.
func (r *Reconnector) connect(src Source) {
	r.src = src
	r.connected = time.Time{}

	info := src.Info()
	if r.size.IsZero() {
		r.size = codec.Size{Width: info.Width, Height: info.Height}
	}
	if r.frameTime == 0 && info.FrameRate > 0 {
		r.frameTime = time.Duration(float64(time.Second) / info.FrameRate)
	}
	if r.frameTime == 0 {
		r.frameTime = time.Second / DefaultReconnectFrameRate
	}

	if r.delivered > 0 {
		r.offset = max(r.lastPTS+r.frameTime, time.Since(r.start))
	}
}

// checkSize rejects a frame whose size differs from the first open's, for
// example from a device that ignored the requested size.
func (r *Reconnector) checkSize(f *codec.Frame) error {
	if f.Width == r.size.Width && f.Height == r.size.Height {
		return nil
	}
	return fmt.Errorf("read %q: frame size changed from %v to %dx%d", r.url, r.size, f.Width, f.Height)
}

// deliver numbers the frame and shifts its PTS onto the Reconnector's
// timeline, which never goes back.
func (r *Reconnector) deliver(f *codec.Frame) {
	pts := f.PTS + r.offset
	if r.delivered > 0 && pts <= r.lastPTS {
		// The source's clock jumped back, for example at a discontinuity of
		// an MPEG-TS stream: continue one frame after the last PTS.
		r.offset += r.lastPTS + r.frameTime - pts
		pts = r.lastPTS + r.frameTime
	}
	if r.delivered == 0 {
		r.start = time.Now().Add(-pts)
	}

	f.PTS = pts
	f.Index = r.delivered
	r.lastPTS = pts
	r.delivered++

	if !r.connected.IsZero() {
		return
	}
	r.connected = time.Now()
	r.playing()
}

// playing records the first frame of a connection.
func (r *Reconnector) playing() {
	reconnected := !r.outageStart.IsZero()
	if reconnected {
		r.outages.Info().Int("attempts", r.attempts).Dur("outage_ms", time.Since(r.outageStart)).
			Msg("input reconnected")
	}

	r.outageStart = time.Time{}
	r.attempts = 0
	r.lastMessage = ""
	r.played = true
	r.status.set(SourcePlaying, func(s *SourceStatus) { s.NextAttempt = time.Time{} })
}

// disconnect closes the current source after it failed or ended.
func (r *Reconnector) disconnect() {
	if err := closeSource(r.src); err != nil {
		r.logger.Warn().Err(err).Msg("close input")
	}
	r.src = nil

	if !r.connected.IsZero() && time.Since(r.connected) >= backoffResetAfter {
		r.backoff.Reset()
	}
	if r.outageStart.IsZero() {
		r.outageStart = time.Now()
	}
}

// reopen waits out the backoff and opens the source until an open works,
// the context ends or an open fails in a way that retrying cannot fix.
func (r *Reconnector) reopen() error {
	for {
		if err := r.wait(); err != nil {
			r.end(err)
			return err
		}

		src, err := r.open(r.ctx, r.size)
		if err == nil {
			r.connect(src)
			// An input that was down at start has not reconnected when
			// it first comes up.
			r.status.set(SourceReconnecting, func(s *SourceStatus) {
				if r.played {
					s.Reconnects++
				}
				s.NextAttempt = time.Time{}
			})
			return nil
		}

		err = r.redact(err)
		if final := r.stopOn(err); final != nil {
			return final
		}
		r.fail(err)
	}
}

// fail records and logs a failed connection or open, and schedules the
// next attempt.
func (r *Reconnector) fail(err error) {
	r.attempts++
	next := time.Now().Add(r.backoff.NextBackOff())
	message := err.Error()
	if errors.Is(err, io.EOF) {
		message = "the input ended"
	}

	r.status.set(SourceReconnecting, func(s *SourceStatus) {
		s.LastError = message
		s.NextAttempt = next
	})

	logger := &r.outages
	if message == r.lastMessage {
		logger = &r.repeats
	}
	r.lastMessage = message
	logger.Warn().Str("error", message).Int("attempts", r.attempts).Time("next_attempt", next).
		Msg("input unavailable; reconnecting")
}

// wait sleeps until the next attempt that fail scheduled.
func (r *Reconnector) wait() error {
	delay := time.Until(r.status.snapshot().NextAttempt)
	if delay <= 0 {
		return r.ctx.Err()
	}

	timer := time.NewTimer(delay)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-r.ctx.Done():
		return r.ctx.Err()
	}
}

// end records that the source will not be reopened.
func (r *Reconnector) end(err error) {
	r.status.set(SourceEnded, func(s *SourceStatus) {
		s.NextAttempt = time.Time{}
		if !errors.Is(err, context.Canceled) {
			s.LastError = err.Error()
		}
	})
	if !errors.Is(err, context.Canceled) {
		r.logger.Error().Err(err).Msg("input stopped; not reconnecting")
	}
}

// stopOn ends the source when its context is done or err is permanent,
// and returns the error for the caller. It returns nil when a reopen should
// follow.
func (r *Reconnector) stopOn(err error) error {
	if ctxErr := r.ctx.Err(); ctxErr != nil {
		r.end(ctxErr)
		return ctxErr
	}
	if isPermanent(err) {
		r.end(err)
		return err
	}
	return nil
}

// redact removes the credentials of the input URL from err's message.
func (r *Reconnector) redact(err error) error {
	if r.url == r.display || !strings.Contains(err.Error(), r.url) {
		return err
	}
	return &redactedError{err: err, message: strings.ReplaceAll(err.Error(), r.url, r.display)}
}

// redactedError is an error whose message had credentials removed.
type redactedError struct {
	err     error
	message string
}

func (e *redactedError) Error() string { return e.message }
func (e *redactedError) Unwrap() error { return e.err }

// isPermanent reports whether err is an input error that reopening with
// the same options cannot fix.
func isPermanent(err error) bool {
	return errors.Is(err, codec.ErrInvalidOption) || errors.Is(err, codec.ErrInvalidGraph) ||
		errors.Is(err, codec.ErrUnsupportedCodec)
}

// statusTracker holds a SourceStatus for concurrent readers.
type statusTracker struct {
	mu     sync.Mutex
	status SourceStatus
}

// set moves to state, resetting Since when the state changes, and applies
// update, when not nil, under the same lock.
func (t *statusTracker) set(state SourceState, update func(*SourceStatus)) {
	t.mu.Lock()
	defer t.mu.Unlock()

	if t.status.State != state {
		t.status.State = state
		t.status.Since = time.Now()
	}
	if update != nil {
		update(&t.status)
	}
}

func (t *statusTracker) snapshot() SourceStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.status
}
