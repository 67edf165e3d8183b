package web

import (
	"mime"
	"net"
	"net/http"
	"strings"
)

// guard rejects requests that a page of another site could make through
// the viewer's browser. The Host header must be an IP address or localhost,
// so a DNS name that an attacker points at 127.0.0.1 (DNS rebinding) gets
// nothing. A request that changes state must come from this server's own
// page: its Origin header, when present, must equal this host. Handlers
// also check the content type of their endpoint. A cross-site form cannot
// send JSON or SDP without a CORS preflight, which this server never grants.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allowedHost(r.Host) {
			s.rejectLog.Warn().Str("host", r.Host).Str("path", r.URL.Path).Msg("rejected request for another host name")
			http.Error(w, "unknown host "+r.Host+": open the page by the address that serve printed", http.StatusMisdirectedRequest)
			return
		}

		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if origin := r.Header.Get("Origin"); origin != "" && origin != "http://"+r.Host && origin != "https://"+r.Host {
				s.rejectLog.Warn().Str("origin", origin).Str("path", r.URL.Path).Msg("rejected cross-origin request")
				http.Error(w, "cross-origin request from "+origin+" rejected", http.StatusForbidden)
				return
			}
		}

		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		next.ServeHTTP(w, r)
	})
}

// maxBodyBytes limits every request body; endpoints set tighter limits of
// their own. maxHeaderBytes limits the request line and headers.
const (
	maxBodyBytes   = 1 << 20
	maxHeaderBytes = 16 << 10
)

// allowedHost accepts a Host header whose name is an IP address or localhost.
func allowedHost(host string) bool {
	name, _, err := net.SplitHostPort(host)
	if err != nil {
		name = host
	}
	name = strings.Trim(name, "[]")
	return strings.EqualFold(name, "localhost") || net.ParseIP(name) != nil
}

// requireContentType rejects a request whose body is not of the given media type.
func requireContentType(w http.ResponseWriter, r *http.Request, mediaType string) bool {
	got, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || got != mediaType {
		http.Error(w, "expected Content-Type "+mediaType+", got "+r.Header.Get("Content-Type"), http.StatusUnsupportedMediaType)
		return false
	}
	return true
}
