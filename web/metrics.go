package web

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/medvseg/medvseg/stream"
)

// latencyBuckets are the histogram bounds of the latency metrics, in
// seconds: 5 ms to 2.5 s, finer where a live overlay should sit.
var latencyBuckets = []float64{.005, .01, .02, .03, .05, .075, .1, .15, .2, .3, .5, .75, 1, 1.5, 2.5}

// metrics are the server's Prometheus collectors, in a registry of their
// own so that tests can run several servers in one process.
type metrics struct {
	registry *prometheus.Registry

	stageLatency  *prometheus.HistogramVec
	glassToGlass  prometheus.Histogram
	framesSent    prometheus.Counter
	viewerDropped prometheus.Counter
	viewersJoined prometheus.Counter
}

func newMetrics(config Config, viewers, peers func() int) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		stageLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "medvseg_stage_latency_seconds",
			Help:    "Time from capture until a frame passed each stage of the server (decoded, segmented, rendered, sent).",
			Buckets: latencyBuckets,
		}, []string{"stage"}),
		glassToGlass: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "medvseg_glass_to_glass_latency_seconds",
			Help: "Time from capture until a viewer's page displayed the frame, as measured by the pages " +
				"from the --stamp code; no samples without --stamp.",
			Buckets: latencyBuckets,
		}),
		framesSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "medvseg_frames_sent_total",
			Help: "Frames encoded and queued for the viewers.",
		}),
		viewerDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "medvseg_viewer_dropped_frames_total",
			Help: "Frames a viewer lost because its send queue was full, summed over viewers.",
		}),
		viewersJoined: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "medvseg_viewers_joined_total",
			Help: "Viewer connections that formed.",
		}),
	}

	controls := config.Controls
	loopCounter := func(name, help string, value func(stream.LiveStats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 {
			return float64(value(controls.Stats()))
		})
	}

	m.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.stageLatency, m.glassToGlass, m.framesSent, m.viewerDropped, m.viewersJoined,
		loopCounter("medvseg_input_frames_total", "Frames read from the source.",
			func(s stream.LiveStats) uint64 { return s.InputFrames }),
		loopCounter("medvseg_output_frames_total", "Frames the loop segmented and handed to the sink.",
			func(s stream.LiveStats) uint64 { return s.OutputFrames }),
		loopCounter("medvseg_keyframes_total", "Model results applied to a frame.",
			func(s stream.LiveStats) uint64 { return s.Keyframes }),
		loopCounter("medvseg_dropped_frames_total", "Frames the loop discarded because it fell behind the source.",
			func(s stream.LiveStats) uint64 { return s.Dropped }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "medvseg_viewers", Help: "Connected viewers."},
			func() float64 { return float64(viewers()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "medvseg_peer_connections",
			Help: "Open peer connections, connected or still connecting.",
		}, func() float64 { return float64(peers()) }),
	)

	if config.Source != nil {
		source := config.Source
		m.registry.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "medvseg_source_up",
				Help: "1 while the source delivers frames, 0 while it connects, reconnects or has ended.",
			}, func() float64 {
				if source.Status().State == stream.SourcePlaying {
					return 1
				}
				return 0
			}),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "medvseg_source_reconnects_total",
				Help: "Times the source was reopened after it failed or ended.",
			}, func() float64 { return float64(source.Status().Reconnects) }),
		)
	}
	return m
}

// observeFrame records the stage latencies of a frame just queued for the viewers.
func (m *metrics) observeFrame(times *stream.Timestamps, sent time.Time) {
	if times == nil || times.Captured.IsZero() {
		return
	}
	observe := func(stage string, at time.Time) {
		if !at.IsZero() {
			m.stageLatency.WithLabelValues(stage).Observe(at.Sub(times.Captured).Seconds())
		}
	}
	observe(string(stream.StageDecoded), times.Decoded)
	observe(string(stream.StageSegmented), times.Segmented)
	observe(string(stream.StageRendered), times.Rendered)
	observe("sent", sent)
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}
