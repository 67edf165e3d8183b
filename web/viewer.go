package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/rs/zerolog"
)

// viewerQueueLength is how many access units wait for one viewer's writer
// goroutine: about a quarter of a second at 30 fps. A viewer whose queue is
// full loses frames until the next keyframe, and the others carry on.
const viewerQueueLength = 8

// maxChannelBuffered is the data channel backlog above which a viewer gets
// no more frame timestamps until it drains. A stalled page must not make
// the server buffer without bound.
const maxChannelBuffered = 64 << 10

// maxChannelMessage is the largest data channel message a page may send;
// larger ones are ignored.
const maxChannelMessage = 4 << 10

// viewer is one browser's video path: its own track, a bounded queue of
// access units and a writer goroutine. The sink's Write never waits on a
// viewer, so a viewer that stalls or leaves cannot hold up the loop or the
// other viewers.
type viewer struct {
	id     string
	track  *webrtc.TrackLocalStaticSample
	logger zerolog.Logger
	stamp  *stampLayout // nil without --stamp

	queue   chan viewerSample
	done    chan struct{}
	channel atomic.Pointer[webrtc.DataChannel]

	// needKeyframe is set after a drop and cleared by the next keyframe.
	// Only the sink's Write goroutine reads or writes it.
	needKeyframe bool
	dropped      atomic.Uint64
	writeErrors  atomic.Uint64
	closeOnce    sync.Once
}

// viewerSample is one access unit with the frame facts the page needs.
type viewerSample struct {
	sample   media.Sample
	keyframe bool
	index    int
	captured time.Time
}

func newViewer(id string, capability webrtc.RTPCodecCapability, stamp *stampLayout, logger zerolog.Logger) (*viewer, error) {
	track, err := webrtc.NewTrackLocalStaticSample(capability, "video", "medvseg")
	if err != nil {
		return nil, fmt.Errorf("create %s track: %w", capability.MimeType, err)
	}
	v := &viewer{
		id:           id,
		track:        track,
		logger:       logger,
		stamp:        stamp,
		queue:        make(chan viewerSample, viewerQueueLength),
		done:         make(chan struct{}),
		needKeyframe: true,
	}
	go v.run()
	return v, nil
}

// offer queues s without waiting. It returns false when the queue is full:
// the frame is dropped and the viewer skips frames until the next keyframe,
// since a decoder cannot continue after a gap.
func (v *viewer) offer(s viewerSample) bool {
	if v.needKeyframe && !s.keyframe {
		return true
	}
	select {
	case v.queue <- s:
		v.needKeyframe = false
		return true
	default:
		v.dropped.Add(1)
		v.needKeyframe = true
		return false
	}
}

// run writes queued access units to the track until close.
func (v *viewer) run() {
	defer close(v.done)
	for s := range v.queue {
		if err := v.track.WriteSample(s.sample); err != nil && !errors.Is(err, io.ErrClosedPipe) {
			if v.writeErrors.Add(1) == 1 {
				v.logger.Warn().Err(err).Int("frame", s.index).Msg("send frame to viewer failed; later failures are counted")
			}
		}
		if v.stamp != nil {
			v.sendFrameTime(s.index, s.captured)
		}
	}
}

// close stops the writer goroutine after the queued access units and waits
// for it. The caller must make sure offer is not called afterwards.
func (v *viewer) close() {
	v.closeOnce.Do(func() { close(v.queue) })
	<-v.done
}

// channelMessage is a data channel message in either direction. Type
// selects the fields in use:
//
//	"stamp"   server: the stamp layout, sent when the channel opens
//	"frame"   server: the capture time of the stamped frame Index
//	"ping"    page: a clock probe sent at page time T (ms)
//	"pong"    server: the ping's T and the server's time Server (Unix ms)
//	"latency" page: glass-to-glass latencies it measured, in ms
type channelMessage struct {
	Type    string       `json:"type"`
	Stamp   *stampLayout `json:"stamp,omitempty"`
	Index   int          `json:"index"`
	Capture float64      `json:"capture,omitempty"` // Unix ms
	T       float64      `json:"t,omitempty"`
	Server  float64      `json:"server,omitempty"` // Unix ms
	Samples []float64    `json:"samples,omitempty"`
}

// sendFrameTime tells the page when the frame whose stamp reads index was
// captured, on the server's clock.
func (v *viewer) sendFrameTime(index int, captured time.Time) {
	channel := v.channel.Load()
	if channel == nil || channel.ReadyState() != webrtc.DataChannelStateOpen ||
		channel.BufferedAmount() > maxChannelBuffered {
		return
	}
	v.send(channel, channelMessage{Type: "frame", Index: stampValue(index), Capture: unixMilliseconds(captured)})
}

func (v *viewer) send(channel *webrtc.DataChannel, m channelMessage) {
	data, err := json.Marshal(m)
	if err != nil {
		return
	}
	if err := channel.SendText(string(data)); err != nil {
		v.logger.Debug().Err(err).Str("type", m.Type).Msg("data channel send failed")
	}
}

// attachChannel serves the page's data channel: the stamp layout when it
// opens, clock probes, and latency reports passed to observe.
func (v *viewer) attachChannel(channel *webrtc.DataChannel, observe func(milliseconds []float64)) {
	if channel.Label() != dataChannelLabel {
		v.logger.Debug().Str("label", channel.Label()).Msg("ignored a data channel with an unknown label")
		return
	}
	v.channel.Store(channel)

	channel.OnOpen(func() {
		if v.stamp != nil {
			v.send(channel, channelMessage{Type: "stamp", Stamp: v.stamp})
		}
	})
	channel.OnMessage(func(msg webrtc.DataChannelMessage) {
		if !msg.IsString || len(msg.Data) > maxChannelMessage {
			return
		}
		var m channelMessage
		if err := json.Unmarshal(msg.Data, &m); err != nil {
			v.logger.Debug().Err(err).Msg("ignored an invalid data channel message")
			return
		}
		switch m.Type {
		case "ping":
			v.send(channel, channelMessage{Type: "pong", T: m.T, Server: unixMilliseconds(time.Now())})
		case "latency":
			observe(m.Samples)
		}
	})
}

// dataChannelLabel is the label of the page's data channel.
const dataChannelLabel = "medvseg"

func unixMilliseconds(t time.Time) float64 {
	return float64(t.UnixMicro()) / 1000
}
