// Package web serves the live overlay to browsers: an HTTP server with
// WHEP-style WebRTC signalling, the embedded page, and a small JSON API for
// the live loop's statistics and settings.
package web

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/rs/zerolog"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/stream"
)

// VideoSink encodes the overlay frames once and writes them to one WebRTC
// track that every viewer's peer connection shares. While no viewer is
// connected it encodes nothing.
type VideoSink struct {
	track     *webrtc.TrackLocalStaticSample
	encoder   *codec.Encoder
	frameTime time.Duration
	logger    zerolog.Logger

	viewers   atomic.Int32
	lastFrame atomic.Int64 // index of the last frame sent, -1 before the first
	sent      atomic.Uint64
	lastPTS   time.Duration
	hasPTS    bool
}

// NewVideoSink opens an encoder for frames of the given size and rate.
// codecName is codec.CodecVP8 or codec.CodecH264; bitRate is in bits per second.
func NewVideoSink(codecName string, width, height int, frameRate float64, bitRate int,
	logger zerolog.Logger) (*VideoSink, error) {
	options, err := codec.RealtimeEncoderOptions(codecName, width, height, frameRate, bitRate)
	if err != nil {
		return nil, err
	}

	mimeType := webrtc.MimeTypeVP8
	capability := webrtc.RTPCodecCapability{MimeType: mimeType, ClockRate: 90000}
	if codecName == codec.CodecH264 {
		// Constrained baseline level 3.1 with non-interleaved packetization,
		// what every browser decodes.
		capability = webrtc.RTPCodecCapability{
			MimeType:    webrtc.MimeTypeH264,
			ClockRate:   90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
		}
	}

	track, err := webrtc.NewTrackLocalStaticSample(capability, "video", "medvseg")
	if err != nil {
		return nil, fmt.Errorf("create %s track: %w", capability.MimeType, err)
	}
	encoder, err := codec.NewEncoder(options)
	if err != nil {
		return nil, err
	}

	s := &VideoSink{
		track:     track,
		encoder:   encoder,
		frameTime: time.Duration(float64(time.Second) / frameRate),
		logger:    logger,
	}
	s.lastFrame.Store(-1)
	return s, nil
}

// Track returns the track to add to each viewer's peer connection.
func (s *VideoSink) Track() *webrtc.TrackLocalStaticSample { return s.track }

// ForceKeyframe makes the next encoded frame a keyframe.
func (s *VideoSink) ForceKeyframe() { s.encoder.ForceKeyframe() }

// LastFrame returns the index of the last frame sent, or -1 before the first.
func (s *VideoSink) LastFrame() int64 { return s.lastFrame.Load() }

// Viewers returns the number of connected viewers.
func (s *VideoSink) Viewers() int { return int(s.viewers.Load()) }

// addViewer changes the viewer count by delta and asks for a keyframe when
// a viewer joins, so the new decoder can start at once.
func (s *VideoSink) addViewer(delta int32) {
	s.viewers.Add(delta)
	if delta > 0 {
		s.encoder.ForceKeyframe()
	}
}

// Write encodes the frame and sends it to the viewers.
func (s *VideoSink) Write(r *stream.Result) error {
	if s.viewers.Load() == 0 {
		s.hasPTS = false
		return nil
	}

	err := s.encoder.Encode(r.Frame, func(u codec.AccessUnit) error {
		duration := s.frameTime
		if s.hasPTS && u.PTS > s.lastPTS && u.PTS-s.lastPTS < time.Second {
			duration = u.PTS - s.lastPTS
		}
		s.lastPTS, s.hasPTS = u.PTS, true

		if err := s.track.WriteSample(media.Sample{Data: u.Data, Duration: duration}); err != nil {
			return fmt.Errorf("send frame %d: %w", r.Frame.Index+1, err)
		}
		return nil
	})
	if err != nil {
		return err
	}

	s.lastFrame.Store(int64(r.Frame.Index))
	if n := s.sent.Add(1); n == 1 {
		s.logger.Info().Int("frame", r.Frame.Index).Msg("first frame sent to viewers")
	}
	return nil
}

// Close releases the encoder. Viewers' peer connections are closed by the Server.
func (s *VideoSink) Close(cause error) error {
	return s.encoder.Close()
}
