// Package web serves the live overlay to browsers: an HTTP server with
// WHEP-style WebRTC signalling, the embedded page, and a small JSON API for
// the live loop's statistics and settings.
package web

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/rs/zerolog"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/stream"
)

// VideoSink encodes the overlay frames once and fans the access units out
// to every viewer's own track through a bounded queue, so a slow or
// departed viewer loses frames on its own and never blocks the loop. While
// no viewer is connected it encodes nothing.
type VideoSink struct {
	capability webrtc.RTPCodecCapability
	encoder    *codec.Encoder
	frameTime  time.Duration
	logger     zerolog.Logger
	stamp      *stampLayout // nil unless stamping is on
	metrics    *metrics     // nil until a Server adopts the sink

	mu      sync.Mutex
	viewers map[*viewer]struct{} // joined viewers

	viewerCount  atomic.Int32
	lastFrame    atomic.Int64 // index of the last frame sent, -1 before the first
	sent         atomic.Uint64
	lastKeyframe atomic.Int64 // Unix ns of the last keyframe request honoured
	lastPTS      time.Duration
	hasPTS       bool
}

// SinkOptions are the optional settings of a VideoSink.
type SinkOptions struct {
	// Stamp draws a binary frame number in the top left corner of every
	// frame, which the page reads back to measure glass-to-glass latency.
	Stamp bool
}

// NewVideoSink opens an encoder for frames of the given size and rate.
// codecName is codec.CodecVP8 or codec.CodecH264; bitRate is in bits per second.
func NewVideoSink(codecName string, width, height int, frameRate float64, bitRate int,
	sinkOptions SinkOptions, logger zerolog.Logger) (*VideoSink, error) {
	options, err := codec.RealtimeEncoderOptions(codecName, width, height, frameRate, bitRate)
	if err != nil {
		return nil, err
	}

	capability := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	if codecName == codec.CodecH264 {
		// Constrained baseline level 3.1 with non-interleaved packetization,
		// what every browser decodes.
		capability = webrtc.RTPCodecCapability{
			MimeType:    webrtc.MimeTypeH264,
			ClockRate:   90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
		}
	}

	var stamp *stampLayout
	if sinkOptions.Stamp {
		if stamp, err = newStampLayout(width, height); err != nil {
			return nil, err
		}
	}

	encoder, err := codec.NewEncoder(options)
	if err != nil {
		return nil, err
	}

	s := &VideoSink{
		capability: capability,
		encoder:    encoder,
		frameTime:  time.Duration(float64(time.Second) / frameRate),
		logger:     logger,
		stamp:      stamp,
		viewers:    map[*viewer]struct{}{},
	}
	s.lastFrame.Store(-1)
	return s, nil
}

// Codec returns the RTP codec that viewers receive.
func (s *VideoSink) Codec() webrtc.RTPCodecCapability { return s.capability }

// ForceKeyframe makes the next encoded frame a keyframe.
func (s *VideoSink) ForceKeyframe() { s.encoder.ForceKeyframe() }

// minKeyframeGap spaces the keyframes that viewers' loss reports request:
// with many lossy viewers, each report would otherwise cost a keyframe.
const minKeyframeGap = 300 * time.Millisecond

// requestKeyframe forces a keyframe unless one was forced within minKeyframeGap.
func (s *VideoSink) requestKeyframe() {
	now := time.Now().UnixNano()
	last := s.lastKeyframe.Load()
	if now-last < int64(minKeyframeGap) || !s.lastKeyframe.CompareAndSwap(last, now) {
		return
	}
	s.encoder.ForceKeyframe()
}

// LastFrame returns the index of the last frame sent, or -1 before the first.
func (s *VideoSink) LastFrame() int64 { return s.lastFrame.Load() }

// Viewers returns the number of connected viewers.
func (s *VideoSink) Viewers() int { return int(s.viewerCount.Load()) }

// join starts sending to v and forces a keyframe, so the new decoder can
// start at once.
func (s *VideoSink) join(v *viewer) {
	s.mu.Lock()
	s.viewers[v] = struct{}{}
	s.viewerCount.Store(int32(len(s.viewers)))
	s.mu.Unlock()
	s.lastKeyframe.Store(time.Now().UnixNano())
	s.encoder.ForceKeyframe()
	if s.metrics != nil {
		s.metrics.viewersJoined.Inc()
	}
}

// leave stops sending to v and ends its writer goroutine.
func (s *VideoSink) leave(v *viewer) {
	s.mu.Lock()
	_, joined := s.viewers[v]
	delete(s.viewers, v)
	s.viewerCount.Store(int32(len(s.viewers)))
	s.mu.Unlock()
	if joined {
		v.close()
	}
}

// Write encodes the frame once and queues it for every viewer. With the
// stamp on it first draws the frame number onto r.Frame.
func (s *VideoSink) Write(r *stream.Result) error {
	if s.viewerCount.Load() == 0 {
		s.hasPTS = false
		return nil
	}
	if s.stamp != nil {
		s.stamp.draw(r.Frame, r.Frame.Index)
	}

	var captured time.Time
	if r.Times != nil {
		captured = r.Times.Captured
	}
	err := s.encoder.Encode(r.Frame, func(u codec.AccessUnit) error {
		duration := s.frameTime
		if s.hasPTS && u.PTS > s.lastPTS && u.PTS-s.lastPTS < time.Second {
			duration = u.PTS - s.lastPTS
		}
		s.lastPTS, s.hasPTS = u.PTS, true

		s.fanOut(viewerSample{
			sample:   media.Sample{Data: u.Data, Duration: duration},
			keyframe: u.Keyframe,
			index:    r.Frame.Index,
			captured: captured,
		})
		return nil
	})
	if err != nil {
		return err
	}

	s.lastFrame.Store(int64(r.Frame.Index))
	if s.metrics != nil {
		s.metrics.framesSent.Inc()
		s.metrics.observeFrame(r.Times, time.Now())
	}
	if n := s.sent.Add(1); n == 1 {
		s.logger.Info().Int("frame", r.Frame.Index).Msg("first frame sent to viewers")
	}
	return nil
}

// fanOut queues one access unit for every joined viewer without waiting.
func (s *VideoSink) fanOut(sample viewerSample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for v := range s.viewers {
		if v.offer(sample) {
			continue
		}
		if dropped := v.dropped.Load(); dropped == 1 || dropped%100 == 0 {
			v.logger.Warn().Uint64("dropped", dropped).Msg("viewer fell behind; dropping frames until the next keyframe")
		}
		if s.metrics != nil {
			s.metrics.viewerDropped.Inc()
		}
		s.requestKeyframe()
	}
}

// Close releases the encoder. Viewers' peer connections are closed by the Server.
func (s *VideoSink) Close(cause error) error {
	return s.encoder.Close()
}
