package web

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medvseg/medvseg/stream"
)

// settableSource is a source status that a test sets.
type settableSource struct {
	mu     sync.Mutex
	status stream.SourceStatus
}

func (s *settableSource) Status() stream.SourceStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

func (s *settableSource) set(status stream.SourceStatus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = status
}

func TestTokenRequired(t *testing.T) {
	const token = "s3cret-token"
	_, httpServer := newTestServer(t, func(c *Config) { c.Token = token })

	protected := []struct{ method, path, contentType, body string }{
		{http.MethodGet, "/api/stats", "", ""},
		{http.MethodGet, "/api/settings", "", ""},
		{http.MethodPost, "/api/settings", "application/json", `{"opacity": 0.9}`},
		{http.MethodPost, "/whep", "application/sdp", "v=0"},
		{http.MethodDelete, "/whep/0123456789abcdef", "", ""},
		{http.MethodGet, "/metrics", "", ""},
	}
	for _, c := range protected {
		for name, header := range map[string]string{
			"no token":    "",
			"wrong token": "Bearer wrong",
			"basic auth":  "Basic " + token,
			"bare token":  token,
		} {
			resp, body := request(t, c.method, httpServer.URL+c.path, c.contentType, c.body, "Authorization", header)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s with %s: status %d (%q), expected 401", c.method, c.path, name, resp.StatusCode, body)
			}
		}
	}

	resp, body := request(t, http.MethodGet, httpServer.URL+"/api/settings", "", "", "Authorization", "Bearer "+token)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /api/settings with the token: status %d (%q), expected 200", resp.StatusCode, body)
	}
	resp, body = request(t, http.MethodPost, httpServer.URL+"/api/settings", "application/json", `{"opacity": 0.9}`,
		"Authorization", "bearer "+token)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"opacity":0.9`) {
		t.Errorf("POST /api/settings with the token: status %d (%q), expected 200 and opacity 0.9", resp.StatusCode, body)
	}

	// The page itself and the health check need no token.
	for _, path := range []string{"/", "/app.js", "/latency.js", "/healthz"} {
		resp, body := request(t, http.MethodGet, httpServer.URL+path, "", "")
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s without a token: status %d (%q), expected 200", path, resp.StatusCode, body)
		}
	}
}

func TestOnlyThePageIsServed(t *testing.T) {
	_, httpServer := newTestServer(t)
	for _, path := range []string{"/static/app.js", "/server.go", "/../go.mod", "/index.html/..%2f..%2fgo.mod",
		"/.git/config", "/api/unknown"} {
		resp, body := request(t, http.MethodGet, httpServer.URL+path, "", "")
		if resp.StatusCode == http.StatusOK {
			t.Errorf("GET %s: status 200 (%.80q), expected an error", path, body)
		}
	}
}

func TestRequestBodiesLimited(t *testing.T) {
	_, httpServer := newTestServer(t)
	large := `{"opacity": 0.5` + strings.Repeat(" ", 8<<10) + `}`
	resp, body := request(t, http.MethodPost, httpServer.URL+"/api/settings", "application/json", large)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "too large") {
		t.Errorf("8 KiB settings body: status %d (%q), expected 400 naming the size", resp.StatusCode, body)
	}
}

func TestHealthFollowsSource(t *testing.T) {
	source := &settableSource{}
	source.set(stream.SourceStatus{URL: "udp://127.0.0.1:5000", State: stream.SourcePlaying, Since: time.Now()})
	_, httpServer := newTestServer(t, func(c *Config) { c.Source = source })

	resp, body := request(t, http.MethodGet, httpServer.URL+"/healthz", "", "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"state":"playing"`) {
		t.Errorf("healthz while playing: status %d (%q), expected 200 and state playing", resp.StatusCode, body)
	}

	source.set(stream.SourceStatus{URL: "udp://127.0.0.1:5000", State: stream.SourceReconnecting, Since: time.Now(),
		LastError: "timed out", Reconnects: 2, NextAttempt: time.Now().Add(time.Second)})
	resp, body = request(t, http.MethodGet, httpServer.URL+"/healthz", "", "")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("healthz while reconnecting: status %d (%q), expected 503", resp.StatusCode, body)
	}
	if !strings.Contains(body, "timed out") {
		t.Errorf("healthz while reconnecting: %q, expected the last error", body)
	}

	_, body = request(t, http.MethodGet, httpServer.URL+"/api/stats", "", "")
	for _, want := range []string{`"state":"reconnecting"`, `"reconnects":2`, `"last_error":"timed out"`} {
		if !strings.Contains(body, want) {
			t.Errorf("/api/stats %s, expected %s", body, want)
		}
	}
}

func TestMetricsExposition(t *testing.T) {
	source := &settableSource{}
	source.set(stream.SourceStatus{State: stream.SourcePlaying, Reconnects: 3})
	server, httpServer := newTestServer(t, func(c *Config) { c.Source = source })
	server.observeDisplayed([]float64{80, 120, -5, 1e9})
	captured := time.Now()
	server.metrics.observeFrame(&stream.Timestamps{Captured: captured, Decoded: captured.Add(5 * time.Millisecond),
		Rendered: captured.Add(30 * time.Millisecond)}, captured.Add(40*time.Millisecond))

	resp, body := request(t, http.MethodGet, httpServer.URL+"/metrics", "", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: status %d, expected 200", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("/metrics Content-Type %q, expected the Prometheus text format", ct)
	}
	for _, want := range []string{
		"medvseg_input_frames_total 0",
		"medvseg_dropped_frames_total 0",
		"medvseg_viewers 0",
		"medvseg_source_up 1",
		"medvseg_source_reconnects_total 3",
		"medvseg_glass_to_glass_latency_seconds_count 2",
		"medvseg_glass_to_glass_latency_seconds_sum 0.2",
		`medvseg_stage_latency_seconds_count{stage="decoded"} 1`,
		`medvseg_stage_latency_seconds_count{stage="rendered"} 1`,
		`medvseg_stage_latency_seconds_count{stage="sent"} 1`,
		`medvseg_stage_latency_seconds_bucket{stage="sent",le="0.05"} 1`,
		"process_cpu_seconds_total",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestSettingsRejectsBadBodies(t *testing.T) {
	_, httpServer := newTestServer(t)
	for name, c := range map[string]struct{ body, want string }{
		"empty body":         {"", "missing JSON body"},
		"trailing data":      {`{"opacity": 0.5} garbage`, "data after the JSON object"},
		"two objects":        {`{"opacity": 0.5}{"opacity": 0.6}`, "data after the JSON object"},
		"interval too large": {`{"keyframe_interval": 100000000000}`, "invalid keyframe interval"},
		"interval above max": {`{"keyframe_interval": 251}`, "use 1 (every frame) to 250"},
	} {
		resp, body := request(t, http.MethodPost, httpServer.URL+"/api/settings", "application/json", c.body)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d (%q), expected 400", name, resp.StatusCode, body)
		}
		if !strings.Contains(body, c.want) {
			t.Errorf("%s: message %q, expected it to contain %q", name, body, c.want)
		}
	}
}

func TestHealthHidesSourceWithToken(t *testing.T) {
	source := &settableSource{}
	source.set(stream.SourceStatus{URL: "http://127.0.0.1/live.ts?api_key=REDACTED", State: stream.SourceReconnecting,
		LastError: "open stream: connection refused"})
	_, httpServer := newTestServer(t, func(c *Config) {
		c.Source = source
		c.Token = "a-token-of-sixteen-chars"
	})

	resp, body := request(t, http.MethodGet, httpServer.URL+"/healthz", "", "")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("healthz while reconnecting: status %d, expected 503", resp.StatusCode)
	}
	if !strings.Contains(body, `"state":"reconnecting"`) {
		t.Errorf("healthz %q, expected the state", body)
	}
	for _, secret := range []string{"live.ts", "connection refused"} {
		if strings.Contains(body, secret) {
			t.Errorf("healthz %q shows %q without a token", body, secret)
		}
	}
}
