package web

import (
	"net/http"
	"strings"
	"testing"
)

func TestSettingsRejectOtherSites(t *testing.T) {
	_, httpServer := newTestServer(t)
	url := httpServer.URL + "/api/settings"
	body := `{"overlay":false}`

	cases := []struct {
		name        string
		host        string
		origin      string
		contentType string
		status      int
	}{
		{"own page", "", httpServer.URL, "application/json", http.StatusOK},
		{"no origin, as curl sends", "", "", "application/json", http.StatusOK},
		{"other site", "", "http://evil.example", "application/json", http.StatusForbidden},
		{"form without preflight", "", "", "text/plain", http.StatusUnsupportedMediaType},
		{"rebound host name", "evil.example:8080", "", "application/json", http.StatusMisdirectedRequest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", c.contentType)
			if c.origin != "" {
				req.Header.Set("Origin", c.origin)
			}
			if c.host != "" {
				req.Host = c.host
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Errorf("status %d, expected %d", resp.StatusCode, c.status)
			}
		})
	}
}

func TestAllowedHost(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1:8080": true, "localhost:8080": true, "[::1]:8080": true, "10.1.2.3": true,
		"evil.example:8080": false, "127.0.0.1.nip.io": false,
	} {
		if got := allowedHost(host); got != want {
			t.Errorf("allowedHost(%q) = %v, expected %v", host, got, want)
		}
	}
}
