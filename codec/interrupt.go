package codec

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/asticode/go-astiav"
)

// ErrTimedOut is returned when an open or read of the input blocks longer
// than ReaderOptions.Timeout, for example because a network sender stopped.
var ErrTimedOut = errors.New("timed out")

// watchdog interrupts FFmpeg's blocking I/O on an input when the context
// ends or one call runs past the timeout. FFmpeg polls the interrupt flag
// while it waits for data, and the call then fails with AVERROR_EXIT.
//
// NOTE: FFmpeg 5.1's v4l2 input waits for a frame in a blocking
// VIDIOC_DQBUF ioctl that never checks the flag, so a camera that stops
// sending without an error is not timed out.
type watchdog struct {
	ctx     context.Context
	timeout time.Duration
	stopCtx func() bool

	// mu serialises writes to the interrupt flag, which FFmpeg reads from C.
	mu          sync.Mutex
	interrupter astiav.IOInterrupter
	timer       *time.Timer
	armed       bool
	deadline    time.Time
	timedOut    bool
}

// newWatchdog installs an interrupt callback on input. A zero timeout
// interrupts on the end of ctx only.
func newWatchdog(ctx context.Context, input *astiav.FormatContext, timeout time.Duration) *watchdog {
	w := &watchdog{ctx: ctx, timeout: timeout, interrupter: input.SetInterruptCallback()}
	if timeout > 0 {
		w.timer = time.AfterFunc(time.Hour, w.expire)
		w.timer.Stop()
	}

	w.stopCtx = context.AfterFunc(ctx, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.interrupter.Interrupt()
	})
	return w
}

// begin starts the timeout of one blocking call.
func (w *watchdog) begin() {
	if w.timer == nil {
		return
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	w.armed = true
	w.deadline = time.Now().Add(w.timeout)
	w.timer.Reset(w.timeout)
}

// end stops the timeout of the call begin started. It returns the context's
// error when the context has ended, ErrTimedOut when the call ran past the
// timeout, and nil otherwise.
func (w *watchdog) end() error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	if w.timer == nil {
		return nil
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	w.armed = false
	w.timer.Stop()
	if !w.timedOut {
		return nil
	}

	w.timedOut = false
	w.interrupter.Resume()
	return ErrTimedOut
}

// expire interrupts the call in progress once its deadline has passed. A
// timer that fires for a call that already ended, or fires early for a new
// call after Reset, finds the deadline not reached or nothing armed.
func (w *watchdog) expire() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.armed || time.Now().Before(w.deadline) {
		return
	}

	w.timedOut = true
	w.interrupter.Interrupt()
}

// close releases the timer and the context watch. The interrupt callback
// stays installed until the input is freed.
func (w *watchdog) close() {
	w.stopCtx()
	if w.timer != nil {
		w.timer.Stop()
	}
}
