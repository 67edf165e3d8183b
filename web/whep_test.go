package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/stream"
)

// fixedControls stores settings as the live loop would, without a loop.
type fixedControls struct {
	settings stream.LiveSettings
}

func (c *fixedControls) Settings() stream.LiveSettings { return c.settings }

func (c *fixedControls) SetSettings(s stream.LiveSettings) error {
	if err := s.Validate(); err != nil {
		return err
	}
	c.settings = s
	return nil
}

func (c *fixedControls) Stats() stream.LiveStats { return stream.LiveStats{} }

// newTestServer serves a server with fixed controls and no loop; edits,
// when given, change its Config first.
func newTestServer(t *testing.T, edits ...func(*Config)) (*Server, *httptest.Server) {
	t.Helper()
	sink, err := NewVideoSink(codec.CodecVP8, 64, 48, 25, 500_000, SinkOptions{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close(nil) })

	controls := &fixedControls{settings: stream.LiveSettings{Overlay: true, Opacity: 0.4, Threshold: 0.5,
		KeyframeInterval: 5}}
	config := Config{Sink: sink, Controls: controls, LoopbackOnly: true, MaxOfferBytes: 8 << 10,
		Logger: zerolog.Nop()}
	for _, edit := range edits {
		edit(&config)
	}
	server, err := NewServer(config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })

	httpServer := httptest.NewServer(server.Handler())
	t.Cleanup(httpServer.Close)
	return server, httpServer
}

func request(t *testing.T, method, url, contentType, body string, headers ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	text, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(text)
}

func TestWHEPRejectsBadOffers(t *testing.T) {
	_, httpServer := newTestServer(t)

	for _, c := range []struct {
		name        string
		contentType string
		body        string
		status      int
	}{
		{"no content type", "", "v=0", http.StatusUnsupportedMediaType},
		{"text content type", "text/plain", "v=0", http.StatusUnsupportedMediaType},
		{"JSON content type", "application/json", `{"sdp":"v=0"}`, http.StatusUnsupportedMediaType},
		{"oversized body", "application/sdp", strings.Repeat("a", 16<<10), http.StatusRequestEntityTooLarge},
		{"empty body", "application/sdp", "", http.StatusBadRequest},
		{"invalid SDP", "application/sdp", "not an offer", http.StatusBadRequest},
	} {
		resp, body := request(t, http.MethodPost, httpServer.URL+"/whep", c.contentType, c.body)
		if resp.StatusCode != c.status {
			t.Errorf("%s: status %d (%q), expected %d", c.name, resp.StatusCode, body, c.status)
		}
		if loc := resp.Header.Get("Location"); loc != "" {
			t.Errorf("%s: Location %q on a rejected offer", c.name, loc)
		}
	}
}

func TestWHEPDeleteUnknownResource(t *testing.T) {
	_, httpServer := newTestServer(t)
	resp, _ := request(t, http.MethodDelete, httpServer.URL+"/whep/0123456789abcdef", "", "")
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("DELETE of an unknown resource: status %d, expected 404", resp.StatusCode)
	}
}

func TestWHEPOfferAnswerDelete(t *testing.T) {
	server, httpServer := newTestServer(t)

	resp, answer := request(t, http.MethodPost, httpServer.URL+"/whep", "application/sdp; charset=utf-8",
		newReceiveOffer(t))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("offer: status %d (%q), expected 201", resp.StatusCode, answer)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/sdp" {
		t.Errorf("answer Content-Type %q, expected application/sdp", ct)
	}
	location := resp.Header.Get("Location")
	if !strings.HasPrefix(location, "/whep/") || len(location) <= len("/whep/") {
		t.Fatalf("Location %q, expected /whep/ID", location)
	}
	if !strings.Contains(answer, "VP8/90000") {
		t.Errorf("answer does not offer VP8:\n%s", answer)
	}
	if !strings.Contains(answer, "127.0.0.1") {
		t.Errorf("answer has no loopback candidate:\n%s", answer)
	}
	if server.Peers() != 1 {
		t.Errorf("%d peers after one offer, expected 1", server.Peers())
	}

	resp, _ = request(t, http.MethodDelete, httpServer.URL+location, "", "")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("DELETE %s: status %d, expected 200", location, resp.StatusCode)
	}
	if server.Peers() != 0 {
		t.Errorf("%d peers after DELETE, expected 0", server.Peers())
	}
	resp, _ = request(t, http.MethodDelete, httpServer.URL+location, "", "")
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("second DELETE %s: status %d, expected 404", location, resp.StatusCode)
	}
}

func TestSettingsAPI(t *testing.T) {
	_, httpServer := newTestServer(t)

	resp, body := request(t, http.MethodPost, httpServer.URL+"/api/settings", "application/json", `{"opacity": 0.8}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("valid change: status %d (%q), expected 200", resp.StatusCode, body)
	}
	if !strings.Contains(body, `"opacity":0.8`) || !strings.Contains(body, `"threshold":0.5`) {
		t.Errorf("settings after changing opacity: %s, expected opacity 0.8 and threshold 0.5 kept", body)
	}

	for name, payload := range map[string]string{
		"opacity out of range": `{"opacity": 2}`,
		"interval zero":        `{"keyframe_interval": 0}`,
		"unknown field":        `{"colour": "red"}`,
		"not JSON":             `opacity=1`,
	} {
		resp, body := request(t, http.MethodPost, httpServer.URL+"/api/settings", "application/json", payload)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d (%q), expected 400", name, resp.StatusCode, body)
		}
	}

	_, body = request(t, http.MethodGet, httpServer.URL+"/api/settings", "", "")
	if !strings.Contains(body, `"opacity":0.8`) {
		t.Errorf("settings %s after rejected changes, expected opacity 0.8 kept", body)
	}
}

func TestWHEPRejectsOffersAboveMaxPeers(t *testing.T) {
	server, httpServer := newTestServer(t, func(c *Config) { c.MaxPeers = 2 })

	for i := 1; i <= 3; i++ {
		resp, body := request(t, http.MethodPost, httpServer.URL+"/whep", "application/sdp", newReceiveOffer(t))
		want := http.StatusCreated
		if i == 3 {
			want = http.StatusServiceUnavailable
		}
		if resp.StatusCode != want {
			t.Errorf("offer %d: status %d (%.100q), expected %d", i, resp.StatusCode, body, want)
		}
	}
	if server.Peers() != 2 {
		t.Errorf("%d peers, expected 2 at the limit", server.Peers())
	}
}

// newReceiveOffer returns the SDP offer of a pion peer connection that
// receives one video track; the connection closes at cleanup.
func newReceiveOffer(t *testing.T) string {
	t.Helper()
	client, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	_, err = client.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo,
		webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
	if err != nil {
		t.Fatal(err)
	}
	offer, err := client.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return offer.SDP
}

func TestWHEPClosesPeerThatNeverConnects(t *testing.T) {
	server, httpServer := newTestServer(t, func(c *Config) { c.ConnectTimeout = 500 * time.Millisecond })

	// The client never applies the answer, so ICE never starts.
	resp, body := request(t, http.MethodPost, httpServer.URL+"/whep", "application/sdp", newReceiveOffer(t))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("offer: status %d (%.100q), expected 201", resp.StatusCode, body)
	}
	if server.Peers() != 1 {
		t.Fatalf("%d peers after the offer, expected 1", server.Peers())
	}

	deadline := time.Now().Add(10 * time.Second)
	for server.Peers() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d peers 10 s after an offer that never connected, expected 0 after the 500 ms timeout",
				server.Peers())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
