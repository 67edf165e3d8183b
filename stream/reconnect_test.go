package stream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medvseg/medvseg/codec"
)

// fastRetry keeps the tests' backoff short.
var fastRetry = ReconnectorOptions{InitialDelay: 20 * time.Millisecond, MaxDelay: 200 * time.Millisecond}

// openURL returns an OpenFunc that opens url through codec.
func openURL(url string, options codec.ReaderOptions) OpenFunc {
	return func(ctx context.Context, size codec.Size) (Source, error) {
		options.Size = size
		return codec.OpenContext(ctx, url, options)
	}
}

// frameRecord is what the tests keep of a delivered frame.
type frameRecord struct {
	index         int
	pts           time.Duration
	width, height int
}

// checkTimeline fails the test unless the frames are numbered 0, 1, 2...,
// have increasing PTS and all have the given size.
func checkTimeline(t *testing.T, frames []frameRecord, width, height int) {
	t.Helper()
	for i, f := range frames {
		if f.index != i {
			t.Errorf("frame %d: index %d", i, f.index)
		}
		if f.width != width || f.height != height {
			t.Errorf("frame %d: size %dx%d, want %dx%d", i, f.width, f.height, width, height)
		}
		if i > 0 && f.pts <= frames[i-1].pts {
			t.Errorf("frame %d: PTS %v not after %v", i, f.pts, frames[i-1].pts)
		}
	}
}

func TestReconnectorReopensEndedLavfi(t *testing.T) {
	const url = "lavfi:testsrc2=size=160x120:rate=25:duration=0.4"
	ctx := t.Context()
	r, err := NewReconnector(ctx, openURL(url, codec.ReaderOptions{}), withURL(fastRetry, url))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	if s := r.Status(); s.State != SourceConnecting {
		t.Errorf("state before the first frame = %q, want %q", s.State, SourceConnecting)
	}

	// Each pass has 10 frames, so 35 frames take at least three reopens.
	var frames []frameRecord
	var f codec.Frame
	for range 35 {
		if err := r.Read(&f); err != nil {
			t.Fatalf("read frame %d: %v", len(frames), err)
		}
		frames = append(frames, frameRecord{f.Index, f.PTS, f.Width, f.Height})
	}
	checkTimeline(t, frames, 160, 120)

	s := r.Status()
	if s.State != SourcePlaying {
		t.Errorf("state = %q, want %q", s.State, SourcePlaying)
	}
	if s.Reconnects < 3 {
		t.Errorf("reconnects = %d, want >= 3", s.Reconnects)
	}
	if s.LastError != "the input ended" {
		t.Errorf("last error = %q, want %q", s.LastError, "the input ended")
	}
	if s.URL != url {
		t.Errorf("status URL = %q, want %q", s.URL, url)
	}
}

func TestReconnectorPermanentError(t *testing.T) {
	const url = "lavfi:testsrc2"
	options := codec.ReaderOptions{FormatOptions: map[string]string{"no_such_option": "1"}}
	retry := withURL(fastRetry, url)
	retry.Size = codec.Size{Width: 160, Height: 120}

	_, err := NewReconnector(t.Context(), openURL(url, options), retry)
	if !errors.Is(err, codec.ErrInvalidOption) {
		t.Errorf("error %v is not codec.ErrInvalidOption", err)
	}
}

func TestReconnectorFirstOpenFails(t *testing.T) {
	url := "udp://" + freeUDPAddress(t)
	options := codec.ReaderOptions{Format: "mpegts", Timeout: 300 * time.Millisecond}

	t.Run("without size", func(t *testing.T) {
		_, err := NewReconnector(t.Context(), openURL(url, options), withURL(fastRetry, url))
		if !errors.Is(err, ErrSizeUnknown) {
			t.Errorf("error %v is not ErrSizeUnknown", err)
		}
		if !errors.Is(err, codec.ErrTimedOut) {
			t.Errorf("error %v is not codec.ErrTimedOut", err)
		}
	})

	t.Run("with size", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		retry := withURL(fastRetry, url)
		retry.Size = codec.Size{Width: 320, Height: 180}

		r, err := NewReconnector(ctx, openURL(url, options), retry)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()

		info := r.Info()
		if info.Width != 320 || info.Height != 180 {
			t.Errorf("info size = %dx%d, want 320x180", info.Width, info.Height)
		}
		if info.FrameRate != DefaultReconnectFrameRate {
			t.Errorf("info frame rate = %v, want %v", info.FrameRate, DefaultReconnectFrameRate)
		}
		s := r.Status()
		if s.State != SourceReconnecting {
			t.Errorf("state = %q, want %q", s.State, SourceReconnecting)
		}
		if s.LastError == "" {
			t.Error("last error is empty")
		}
		if s.NextAttempt.IsZero() {
			t.Error("next attempt is zero")
		}

		cancel()
		var f codec.Frame
		if err := r.Read(&f); !errors.Is(err, context.Canceled) {
			t.Errorf("read after cancel: error %v is not context.Canceled", err)
		}
		if s := r.Status(); s.State != SourceEnded {
			t.Errorf("state after cancel = %q, want %q", s.State, SourceEnded)
		}
	})
}

func TestReconnectorSenderRestarts(t *testing.T) {
	address := freeUDPAddress(t)
	url := "udp://" + address
	sender := startSender(t, address, "320x240")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	options := codec.ReaderOptions{Format: "mpegts", Timeout: time.Second}
	r, err := NewReconnector(ctx, openURL(url, options), withURL(fastRetry, url))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	reader := startReading(r)
	defer reader.stop(cancel)

	reader.waitFrames(t, 10)
	if err := sender.Process.Kill(); err != nil {
		t.Fatalf("kill the sender: %v", err)
	}
	sender.Wait()

	// The read times out within the 1 s timeout and reconnecting begins.
	waitStatus(t, r, "reconnecting with an error", func(s SourceStatus) bool {
		return s.State == SourceReconnecting && s.LastError != "" && !s.NextAttempt.IsZero()
	})
	before := reader.count()

	// The new sender sends a larger picture, which the reopened input
	// scales to the first size.
	startSender(t, address, "640x480")
	waitStatus(t, r, "playing after a reconnect", func(s SourceStatus) bool {
		return s.State == SourcePlaying && s.Reconnects >= 1
	})
	reader.waitFrames(t, before+10)

	frames := reader.stop(cancel)
	checkTimeline(t, frames, 320, 240)
	if err := reader.err; !errors.Is(err, context.Canceled) {
		t.Errorf("read error after cancel = %v, want context.Canceled", err)
	}
}

func TestReconnectorRejectsSizeChange(t *testing.T) {
	// Every open after the first ignores the requested size, as a device
	// might, so every reopen fails on its first frame.
	opens := 0
	open := func(ctx context.Context, size codec.Size) (Source, error) {
		opens++
		graph := "lavfi:testsrc2=size=160x120:rate=25:duration=0.4"
		if opens > 1 {
			graph = "lavfi:testsrc2=size=320x240:rate=25"
		}
		return codec.OpenContext(ctx, graph, codec.ReaderOptions{})
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	r, err := NewReconnector(ctx, open, withURL(fastRetry, "lavfi:testsrc2"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	reader := startReading(r)
	defer reader.stop(cancel)
	waitStatus(t, r, "a frame size error", func(s SourceStatus) bool {
		return strings.Contains(s.LastError, "frame size changed from 160x120 to 320x240")
	})

	frames := reader.stop(cancel)
	if len(frames) != 10 {
		t.Errorf("frames = %d, want the 10 of the first open", len(frames))
	}
	checkTimeline(t, frames, 160, 120)
}

// withURL returns options with URL set.
func withURL(options ReconnectorOptions, url string) ReconnectorOptions {
	options.URL = url
	return options
}

// freeUDPAddress returns a 127.0.0.1 address with a UDP port that was free
// a moment ago.
func freeUDPAddress(t *testing.T) string {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.LocalAddr().String()
}

// startSender runs the ffmpeg CLI sending a test pattern of the given size
// in real time as MPEG-TS to address over UDP, and kills it when the test
// ends.
func startSender(t *testing.T, address, size string) *exec.Cmd {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Skip("the ffmpeg command line tool is not installed")
	}

	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
		"-f", "lavfi", "-i", fmt.Sprintf("testsrc2=size=%s:rate=25", size),
		"-c:v", "mpeg2video", "-g", "5", "-f", "mpegts", "udp://"+address+"?pkt_size=1316")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start ffmpeg: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

// frameReader reads a source on its own goroutine, because Read blocks
// while the source reconnects.
type frameReader struct {
	mu     sync.Mutex
	frames []frameRecord
	done   chan struct{}
	err    error
}

func startReading(src Source) *frameReader {
	fr := &frameReader{done: make(chan struct{})}
	go func() {
		defer close(fr.done)
		var f codec.Frame
		for {
			if err := src.Read(&f); err != nil {
				fr.err = err
				return
			}
			fr.mu.Lock()
			fr.frames = append(fr.frames, frameRecord{f.Index, f.PTS, f.Width, f.Height})
			fr.mu.Unlock()
		}
	}()
	return fr
}

func (fr *frameReader) count() int {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	return len(fr.frames)
}

// waitFrames waits until n frames have arrived. The deadline is generous
// because it guards against a hang and measures nothing.
func (fr *frameReader) waitFrames(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for fr.count() < n {
		select {
		case <-fr.done:
			t.Fatalf("reading stopped after %d frames, want %d: %v", fr.count(), n, fr.err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d frames after 30 s, want %d", fr.count(), n)
		}
	}
}

// stop cancels the reading and returns the frames read.
func (fr *frameReader) stop(cancel context.CancelFunc) []frameRecord {
	cancel()
	<-fr.done
	fr.mu.Lock()
	defer fr.mu.Unlock()
	return fr.frames
}

// waitStatus waits until the status matches. The deadline is generous
// because it guards against a hang and measures nothing.
func waitStatus(t *testing.T, src SourceStatuser, what string, match func(SourceStatus) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !match(src.Status()) {
		if time.Now().After(deadline) {
			t.Fatalf("status after 30 s = %+v, want %s", src.Status(), what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
