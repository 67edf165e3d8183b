package web

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"

	"github.com/medvseg/medvseg/stream"
)

//go:embed static
var staticFiles embed.FS

// DefaultMaxOfferBytes is the largest SDP offer the server reads. Browser
// offers for one video track are a few kilobytes.
const DefaultMaxOfferBytes = 64 << 10

// DefaultMaxPeers is the default limit on open peer connections. Each
// viewer costs an encoder's output of bandwidth and a writer goroutine, and
// the limit keeps offers that never connect from piling up.
const DefaultMaxPeers = 32

// ICE consent timing of viewers' connections.
const (
	iceDisconnectedTimeout = 3 * time.Second
	iceFailedTimeout       = 7 * time.Second
	iceKeepaliveInterval   = time.Second
)

// DefaultConnectTimeout bounds how long an answered offer may take to
// connect. An offer whose ICE never completes would otherwise hold a peer
// connection, its sockets and goroutines until pion gives up.
const DefaultConnectTimeout = 15 * time.Second

// displayedWindow is the number of recent glass-to-glass latencies that
// /api/stats summarises, over all viewers.
const displayedWindow = 600

// shutdownTimeout bounds how long Serve waits for open HTTP requests after
// its context ends.
const shutdownTimeout = 5 * time.Second

// Controls are the live loop's settings and statistics; *stream.LiveProcessor
// implements them.
type Controls interface {
	Settings() stream.LiveSettings
	SetSettings(stream.LiveSettings) error
	Stats() stream.LiveStats
}

// Config sets up a Server.
type Config struct {
	// Sink is the video every viewer receives.
	Sink *VideoSink
	// Controls are the loop's settings and statistics for the page.
	Controls Controls
	// LoopbackOnly restricts WebRTC to loopback addresses, for a server that
	// listens on 127.0.0.1 or ::1.
	LoopbackOnly bool
	// MaxOfferBytes limits the size of an SDP offer; 0 means DefaultMaxOfferBytes.
	MaxOfferBytes int64
	// MaxPeers limits the open peer connections, connected or still
	// connecting; 0 means DefaultMaxPeers. Offers above it get 503.
	MaxPeers int
	// ConnectTimeout is how long a peer may take to connect after its
	// offer is answered before it is closed; 0 means DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// Source reports the input's condition for the page, /healthz and
	// /metrics; nil when the input has no status to report.
	Source stream.SourceStatuser
	// Token, when not empty, is the bearer token that signalling, the API
	// and /metrics require in an Authorization header. The page and
	// /healthz stay open.
	Token string
	// Logger receives start, stop and viewer events.
	Logger zerolog.Logger
}

// Server serves the page, the WHEP endpoint and the JSON API, and owns the
// viewers' peer connections.
type Server struct {
	config    Config
	api       *webrtc.API
	mux       *http.ServeMux
	metrics   *metrics
	displayed *stream.LatencyWindow // glass-to-glass latencies the pages report
	rejectLog zerolog.Logger        // sampled: rejected requests can come every second

	mu     sync.Mutex
	peers  map[string]*peer
	closed bool
}

// NewServer prepares a Server; Serve starts it.
func NewServer(config Config) (*Server, error) {
	if config.Sink == nil || config.Controls == nil {
		return nil, errors.New("web server: Sink and Controls are required")
	}
	if config.MaxOfferBytes == 0 {
		config.MaxOfferBytes = DefaultMaxOfferBytes
	}
	if config.MaxPeers == 0 {
		config.MaxPeers = DefaultMaxPeers
	}
	if config.ConnectTimeout == 0 {
		config.ConnectTimeout = DefaultConnectTimeout
	}

	api, err := newAPI(config.LoopbackOnly)
	if err != nil {
		return nil, err
	}

	s := &Server{
		config:    config,
		api:       api,
		mux:       http.NewServeMux(),
		displayed: stream.NewLatencyWindow(displayedWindow),
		rejectLog: config.Logger.Sample(&zerolog.BurstSampler{Burst: 5, Period: time.Minute}),
		peers:     map[string]*peer{},
	}
	s.metrics = newMetrics(config, config.Sink.Viewers, s.Peers)
	config.Sink.metrics = s.metrics

	static, err := fs.Sub(staticFiles, "static")
	if err != nil {
		return nil, fmt.Errorf("web server: embedded page: %w", err)
	}
	// The page's files are the only ones served: the embedded folder has
	// an index.html, so the file server never lists a directory.
	s.mux.Handle("GET /", http.FileServerFS(static))
	s.mux.HandleFunc("GET /healthz", s.handleHealth)
	s.mux.Handle("GET /metrics", s.requireToken(s.metrics.handler()))
	s.mux.Handle("POST /whep", s.requireToken(http.HandlerFunc(s.handleOffer)))
	s.mux.Handle("DELETE /whep/{id}", s.requireToken(http.HandlerFunc(s.handleDelete)))
	s.mux.Handle("GET /api/stats", s.requireToken(http.HandlerFunc(s.handleStats)))
	s.mux.Handle("GET /api/settings", s.requireToken(http.HandlerFunc(s.handleGetSettings)))
	s.mux.Handle("POST /api/settings", s.requireToken(http.HandlerFunc(s.handleSetSettings)))
	return s, nil
}

// newAPI builds the WebRTC API: default codecs and interceptors (NACK,
// RTCP reports, TWCC), UDP over IPv4, no mDNS.
func newAPI(loopbackOnly bool) (*webrtc.API, error) {
	media := &webrtc.MediaEngine{}
	if err := media.RegisterDefaultCodecs(); err != nil {
		return nil, fmt.Errorf("register WebRTC codecs: %w", err)
	}
	interceptors := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(media, interceptors); err != nil {
		return nil, fmt.Errorf("register WebRTC interceptors: %w", err)
	}

	settings := webrtc.SettingEngine{}
	settings.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	// Browsers hide their host candidates behind mDNS names; the connection
	// forms through peer-reflexive candidates once the browser's STUN checks
	// arrive, so the server needs no mDNS of its own.
	settings.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	// pion leaves loopback out of its host candidates unless asked.
	settings.SetIncludeLoopbackCandidate(true)
	// A viewer that vanishes without a DELETE (a crashed browser, a lost
	// network) holds a viewer slot until ICE fails: pion's default is 25 s,
	// this about 10 s. The page reconnects by itself after a failure.
	settings.SetICETimeouts(iceDisconnectedTimeout, iceFailedTimeout, iceKeepaliveInterval)
	if loopbackOnly {
		settings.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	}

	return webrtc.NewAPI(
		webrtc.WithMediaEngine(media),
		webrtc.WithInterceptorRegistry(interceptors),
		webrtc.WithSettingEngine(settings),
	), nil
}

// Handler returns the HTTP handler of the page, the WHEP endpoint and the API.
func (s *Server) Handler() http.Handler { return s.guard(s.mux) }

// Serve serves HTTP on listener until ctx ends, then shuts down: it stops
// accepting requests, waits up to 5 s for open ones and closes every peer
// connection. It returns nil after a shutdown that ctx started.
func (s *Server) Serve(ctx context.Context, listener net.Listener) error {
	server := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    maxHeaderBytes,
	}
	event := s.config.Logger.Info().Str("url", pageURL(listener.Addr()))
	if s.config.Token != "" {
		event = event.Str("open_with", "the URL followed by #token=TOKEN")
	}
	event.Msg("serving the live overlay")

	done := make(chan error, 1)
	go func() { done <- server.Serve(listener) }()

	select {
	case err := <-done:
		s.Close()
		return fmt.Errorf("serve on %s: %w", listener.Addr(), err)
	case <-ctx.Done():
	}

	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := server.Shutdown(shutdownCtx)
	<-done
	s.Close()
	s.config.Logger.Info().Msg("web server stopped")
	if err != nil {
		return fmt.Errorf("shut down the web server: %w", err)
	}
	return nil
}

// Close closes every peer connection and rejects new ones.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	peers := make([]*peer, 0, len(s.peers))
	for _, p := range s.peers {
		peers = append(peers, p)
	}
	s.peers = map[string]*peer{}
	s.mu.Unlock()

	var errs []error
	for _, p := range peers {
		errs = append(errs, p.close("server stopped"))
	}
	return errors.Join(errs...)
}

// pageURL returns the page's URL on address. A browser cannot open an
// unspecified address such as 0.0.0.0 or [::], so the URL uses loopback on
// the same port. Other machines use this machine's own address.
func pageURL(address net.Addr) string {
	tcp, ok := address.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return "http://" + address.String() + "/"
	}
	return fmt.Sprintf("http://127.0.0.1:%d/", tcp.Port)
}

// observeDisplayed records glass-to-glass latencies, in milliseconds, that
// a page measured. Values outside (0, 60 s) are clock errors and ignored.
func (s *Server) observeDisplayed(milliseconds []float64) {
	for _, ms := range milliseconds {
		if !(ms > 0 && ms < 60_000) {
			continue
		}
		latency := time.Duration(ms * float64(time.Millisecond))
		s.displayed.Add(stream.StageDisplayed, latency)
		s.metrics.glassToGlass.Observe(latency.Seconds())
	}
}

// Peers returns the number of open peer connections.
func (s *Server) Peers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.peers)
}
