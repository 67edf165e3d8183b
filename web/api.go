package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/medvseg/medvseg/stream"
)

// maxSettingsBytes limits the body of POST /api/settings.
const maxSettingsBytes = 4 << 10

// statsResponse is the body of GET /api/stats.
type statsResponse struct {
	InputFPS     float64 `json:"input_fps"`
	OutputFPS    float64 `json:"output_fps"`
	KeyframeRate float64 `json:"keyframe_rate"`
	InputFrames  uint64  `json:"input_frames"`
	OutputFrames uint64  `json:"output_frames"`
	Keyframes    uint64  `json:"keyframes"`
	Dropped      uint64  `json:"dropped"`
	Viewers      int     `json:"viewers"`
	// Frame is the 0-based index of the last frame sent to viewers, -1 before the first.
	Frame int64 `json:"frame"`
	// LatencyMS maps each stage to its delay after capture, in
	// milliseconds; "displayed" is the glass-to-glass latency the pages
	// measured, present only with --stamp.
	LatencyMS map[stream.Stage]latencyResponse `json:"latency_ms"`
	Source    *sourceResponse                  `json:"source,omitempty"`
}

// sourceResponse is the input's condition in /api/stats and /healthz.
type sourceResponse struct {
	URL         string  `json:"url,omitempty"`
	State       string  `json:"state"`
	ForSeconds  float64 `json:"for_s"`
	LastError   string  `json:"last_error,omitempty"`
	Reconnects  int     `json:"reconnects"`
	NextAttempt float64 `json:"next_attempt_s,omitempty"` // seconds from now
}

func newSourceResponse(source stream.SourceStatuser) *sourceResponse {
	if source == nil {
		return nil
	}
	status := source.Status()
	now := time.Now()
	r := &sourceResponse{
		URL:        status.URL,
		State:      string(status.State),
		LastError:  status.LastError,
		Reconnects: status.Reconnects,
	}
	if !status.Since.IsZero() {
		r.ForSeconds = now.Sub(status.Since).Seconds()
	}
	if !status.NextAttempt.IsZero() {
		r.NextAttempt = max(0, status.NextAttempt.Sub(now).Seconds())
	}
	return r
}

type latencyResponse struct {
	P50   float64 `json:"p50"`
	P95   float64 `json:"p95"`
	Count int     `json:"count"`
}

// settingsMessage is the body of GET and POST /api/settings. In a POST,
// absent fields keep their current value.
type settingsMessage struct {
	Overlay          *bool    `json:"overlay,omitempty"`
	Opacity          *float64 `json:"opacity,omitempty"`
	Threshold        *float64 `json:"threshold,omitempty"`
	KeyframeInterval *int     `json:"keyframe_interval,omitempty"`
}

func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	stats := s.config.Controls.Stats()
	response := statsResponse{
		InputFPS:     stats.InputFPS,
		OutputFPS:    stats.OutputFPS,
		KeyframeRate: stats.KeyframeRate,
		InputFrames:  stats.InputFrames,
		OutputFrames: stats.OutputFrames,
		Keyframes:    stats.Keyframes,
		Dropped:      stats.Dropped,
		Viewers:      s.config.Sink.Viewers(),
		Frame:        s.config.Sink.LastFrame(),
		LatencyMS:    map[stream.Stage]latencyResponse{},
	}
	for stage, summary := range stats.Latency {
		response.LatencyMS[stage] = newLatencyResponse(summary)
	}
	if summary, ok := s.displayed.Summary()[stream.StageDisplayed]; ok {
		response.LatencyMS[stream.StageDisplayed] = newLatencyResponse(summary)
	}
	response.Source = newSourceResponse(s.config.Source)
	writeJSON(w, response)
}

func newLatencyResponse(summary stream.LatencySummary) latencyResponse {
	return latencyResponse{P50: milliseconds(summary.P50), P95: milliseconds(summary.P95), Count: summary.Count}
}

// healthResponse is the body of GET /healthz.
type healthResponse struct {
	Status string          `json:"status"`
	Source *sourceResponse `json:"source,omitempty"`
}

// handleHealth returns 200 while the source delivers frames (or has no
// status to report) and 503 while it connects, reconnects or has ended, so
// a monitor sees a stalled input even though the server itself is up.
//
// /healthz needs no token, so with one set it leaves out the input's URL
// and error text, which may name a camera's address or a key.
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	source := newSourceResponse(s.config.Source)
	if source != nil && s.config.Token != "" {
		source.URL, source.LastError = "", ""
	}
	if source != nil && source.State != string(stream.SourcePlaying) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusServiceUnavailable)
		json.NewEncoder(w).Encode(healthResponse{Status: "source " + source.State, Source: source})
		return
	}
	writeJSON(w, healthResponse{Status: "ok", Source: source})
}

func (s *Server) handleGetSettings(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, newSettingsMessage(s.config.Controls.Settings()))
}

// handleSetSettings applies the fields present in the body and returns the
// settings now in effect; invalid values are rejected with 400 and change nothing.
func (s *Server) handleSetSettings(w http.ResponseWriter, r *http.Request) {
	if !requireContentType(w, r, "application/json") {
		return
	}

	var m settingsMessage
	decoder := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxSettingsBytes))
	decoder.DisallowUnknownFields()
	err := decoder.Decode(&m)
	if errors.Is(err, io.EOF) {
		http.Error(w, `missing JSON body: send the settings to change, for example {"opacity": 0.5}`,
			http.StatusBadRequest)
		return
	}
	if err == nil && decoder.More() {
		err = errors.New("data after the JSON object")
	}
	if err != nil {
		http.Error(w, fmt.Sprintf("invalid settings JSON: %v", err), http.StatusBadRequest)
		return
	}

	settings := s.config.Controls.Settings()
	if m.Overlay != nil {
		settings.Overlay = *m.Overlay
	}
	if m.Opacity != nil {
		settings.Opacity = *m.Opacity
	}
	if m.Threshold != nil {
		settings.Threshold = *m.Threshold
	}
	if m.KeyframeInterval != nil {
		settings.KeyframeInterval = *m.KeyframeInterval
	}

	if err := s.config.Controls.SetSettings(settings); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.config.Logger.Info().Bool("overlay", settings.Overlay).Float64("opacity", settings.Opacity).
		Float64("threshold", settings.Threshold).Int("keyframe_interval", settings.KeyframeInterval).
		Msg("settings changed")
	writeJSON(w, newSettingsMessage(s.config.Controls.Settings()))
}

func newSettingsMessage(s stream.LiveSettings) settingsMessage {
	return settingsMessage{Overlay: &s.Overlay, Opacity: &s.Opacity, Threshold: &s.Threshold,
		KeyframeInterval: &s.KeyframeInterval}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(v)
}

func milliseconds(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
