package web

import (
	"crypto/subtle"
	"net/http"
	"strings"
)

// requireToken rejects a request without the configured bearer token with
// 401. Without a token it passes every request.
func (s *Server) requireToken(next http.Handler) http.Handler {
	if s.config.Token == "" {
		return next
	}
	want := []byte(s.config.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, token, found := strings.Cut(r.Header.Get("Authorization"), " ")
		if !found || !strings.EqualFold(scheme, "Bearer") ||
			subtle.ConstantTimeCompare([]byte(strings.TrimSpace(token)), want) != 1 {
			s.rejectLog.Warn().Str("remote", r.RemoteAddr).Str("path", r.URL.Path).
				Msg("rejected a request without the right bearer token")
			w.Header().Set("WWW-Authenticate", `Bearer realm="medvseg"`)
			http.Error(w, "missing or wrong bearer token: open the page as http://HOST:PORT/#token=TOKEN, "+
				"or send the header Authorization: Bearer TOKEN", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
