package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/rs/zerolog"
)

// gatheringTimeout bounds how long an answer waits for the server's ICE
// candidates. On a host with a few interfaces gathering takes milliseconds.
const gatheringTimeout = 5 * time.Second

// peer is one viewer's peer connection.
type peer struct {
	id     string
	pc     *webrtc.PeerConnection
	sink   *VideoSink
	viewer *viewer
	logger zerolog.Logger

	mu     sync.Mutex
	joined bool
	left   bool
}

// handleOffer answers a WHEP offer: POST /whep with an SDP offer as
// application/sdp returns 201 Created, the SDP answer, and the resource URL
// to DELETE in the Location header. The answer carries all of the server's
// candidates, so no trickle ICE is needed.
func (s *Server) handleOffer(w http.ResponseWriter, r *http.Request) {
	mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mediaType != "application/sdp" {
		http.Error(w, fmt.Sprintf("invalid Content-Type %q: send the SDP offer as application/sdp",
			r.Header.Get("Content-Type")), http.StatusUnsupportedMediaType)
		return
	}

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.config.MaxOfferBytes))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		http.Error(w, fmt.Sprintf("SDP offer larger than %d bytes", tooLarge.Limit), http.StatusRequestEntityTooLarge)
		return
	}
	if err != nil {
		http.Error(w, fmt.Sprintf("read SDP offer: %v", err), http.StatusBadRequest)
		return
	}
	if len(body) == 0 {
		http.Error(w, "missing SDP offer in the request body", http.StatusBadRequest)
		return
	}

	p, answer, status, err := s.connect(r.Context(), string(body))
	if err != nil {
		s.rejectLog.Warn().Err(err).Str("remote", r.RemoteAddr).Msg("WHEP offer rejected")
		http.Error(w, err.Error(), status)
		return
	}

	w.Header().Set("Content-Type", "application/sdp")
	w.Header().Set("Location", "/whep/"+p.id)
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, answer)
}

// connect creates a peer connection for offer and returns the peer, its
// SDP answer, and on failure the HTTP status to reply with.
func (s *Server) connect(ctx context.Context, offer string) (*peer, string, int, error) {
	if n := s.Peers(); n >= s.config.MaxPeers {
		return nil, "", http.StatusServiceUnavailable, fmt.Errorf("%d viewer connections are open, the maximum: "+
			"close a viewer, or start serve with a higher --max-viewers", n)
	}
	pc, err := s.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, "", http.StatusInternalServerError, fmt.Errorf("create peer connection: %w", err)
	}

	p := &peer{id: newPeerID(), pc: pc, sink: s.config.Sink}
	p.logger = s.config.Logger.With().Str("peer", p.id).Logger()
	p.viewer, err = newViewer(p.id, s.config.Sink.Codec(), s.config.Sink.stamp, p.logger)
	if err != nil {
		pc.Close()
		return nil, "", http.StatusInternalServerError, err
	}

	answer, status, err := s.negotiate(ctx, p, offer)
	if err != nil {
		p.close("negotiation failed")
		return nil, "", status, err
	}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		p.close("server is shutting down")
		return nil, "", http.StatusServiceUnavailable, errors.New("server is shutting down")
	}
	s.peers[p.id] = p
	s.mu.Unlock()
	time.AfterFunc(s.config.ConnectTimeout, func() { s.expire(p) })

	p.logger.Debug().Msg("viewer offer answered")
	return p, answer, http.StatusCreated, nil
}

// negotiate adds the viewer's track, applies the offer and gathers the answer.
func (s *Server) negotiate(ctx context.Context, p *peer, offer string) (string, int, error) {
	sender, err := p.pc.AddTrack(p.viewer.track)
	if err != nil {
		return "", http.StatusInternalServerError, fmt.Errorf("add video track: %w", err)
	}
	// The reader ends when the peer connection closes and its sender stops.
	go p.readRTCP(sender)

	p.pc.OnConnectionStateChange(func(state webrtc.PeerConnectionState) {
		s.onStateChange(p, state)
	})
	p.pc.OnDataChannel(func(channel *webrtc.DataChannel) {
		p.viewer.attachChannel(channel, s.observeDisplayed)
	})

	err = p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer})
	if err != nil {
		return "", http.StatusBadRequest, fmt.Errorf("invalid SDP offer: %w", err)
	}
	answer, err := p.pc.CreateAnswer(nil)
	if err != nil {
		return "", http.StatusBadRequest, fmt.Errorf("create SDP answer (does the offer receive %s video?): %w",
			s.config.Sink.Codec().MimeType, err)
	}

	gathered := webrtc.GatheringCompletePromise(p.pc)
	if err := p.pc.SetLocalDescription(answer); err != nil {
		return "", http.StatusInternalServerError, fmt.Errorf("set SDP answer: %w", err)
	}

	timer := time.NewTimer(gatheringTimeout)
	defer timer.Stop()
	select {
	case <-gathered:
	case <-timer.C:
		return "", http.StatusInternalServerError, fmt.Errorf("ICE gathering timed out after %v", gatheringTimeout)
	case <-ctx.Done():
		return "", http.StatusServiceUnavailable, ctx.Err()
	}
	return p.pc.LocalDescription().SDP, http.StatusCreated, nil
}

// readRTCP asks the encoder for a keyframe when the viewer reports a lost
// picture; the sink spaces such requests.
func (p *peer) readRTCP(sender *webrtc.RTPSender) {
	for {
		packets, _, err := sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, packet := range packets {
			switch packet.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				p.logger.Debug().Msg("viewer requested a keyframe")
				p.sink.requestKeyframe()
			}
		}
	}
}

// onStateChange counts a viewer in when its connection forms and out when
// it fails or closes; a failed connection is closed and forgotten.
func (s *Server) onStateChange(p *peer, state webrtc.PeerConnectionState) {
	p.logger.Debug().Str("state", state.String()).Msg("viewer connection state")

	switch state {
	case webrtc.PeerConnectionStateConnected:
		p.mu.Lock()
		if !p.joined && !p.left {
			p.joined = true
			p.sink.join(p.viewer)
			p.logger.Info().Int("viewers", p.sink.Viewers()).Msg("viewer joined")
		}
		p.mu.Unlock()
	case webrtc.PeerConnectionStateFailed:
		s.remove(p.id)
		go p.close("connection failed")
	case webrtc.PeerConnectionStateClosed:
		s.remove(p.id)
		p.leave("connection closed")
	}
}

// expire closes p unless it has connected.
func (s *Server) expire(p *peer) {
	p.mu.Lock()
	joined := p.joined
	p.mu.Unlock()
	if joined || s.remove(p.id) == nil {
		return
	}
	p.logger.Info().Dur("after", s.config.ConnectTimeout).Msg("viewer did not connect; closing its peer connection")
	p.close("connection timed out")
}

// handleDelete ends a viewer's session: DELETE on the resource URL of the answer.
func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	p := s.remove(id)
	if p == nil {
		http.Error(w, fmt.Sprintf("WHEP resource %q not found", id), http.StatusNotFound)
		return
	}

	if err := p.close("viewer left"); err != nil {
		p.logger.Warn().Err(err).Msg("close peer connection")
	}
	w.WriteHeader(http.StatusOK)
}

// remove forgets the peer with id and returns it, or nil when there is none.
func (s *Server) remove(id string) *peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.peers[id]
	delete(s.peers, id)
	return p
}

// close closes the peer connection and counts the viewer out.
func (p *peer) close(reason string) error {
	err := p.pc.Close()
	p.leave(reason)
	return err
}

// leave counts a joined viewer out, stops its writer and logs it, once.
func (p *peer) leave(reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.left {
		return
	}
	p.left = true
	if !p.joined {
		p.viewer.close()
		return
	}
	p.sink.leave(p.viewer)
	p.logger.Info().Str("reason", reason).Int("viewers", p.sink.Viewers()).
		Uint64("dropped", p.viewer.dropped.Load()).Msg("viewer left")
}

// newPeerID returns a random 16-hex-digit id for a peer's resource URL.
func newPeerID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
