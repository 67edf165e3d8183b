package main

import (
	"strings"
	"testing"
)

func TestCheckListenNeedsTokenOffLoopback(t *testing.T) {
	for _, c := range []struct {
		listen   string
		token    string
		insecure bool
		wantErr  string
		loopback bool
	}{
		{listen: "127.0.0.1:8080", loopback: true},
		{listen: "localhost:8080", loopback: true},
		{listen: "[::1]:8080", loopback: true},
		{listen: "0.0.0.0:8080", wantErr: "give a bearer token"},
		{listen: ":8080", wantErr: "give a bearer token"},
		{listen: "192.0.2.1:8080", wantErr: "give a bearer token"},
		{listen: "0.0.0.0:8080", token: "0123456789abcdef"},
		{listen: "0.0.0.0:8080", insecure: true},
		{listen: "127.0.0.1:99999", wantErr: "port must be a number from 0 to 65535"},
		{listen: "127.0.0.1", wantErr: "use host:port"},
	} {
		o := serveOptions{listen: c.listen, token: c.token, insecure: c.insecure}
		loopback, err := checkListen(o)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("--listen %s (token %q, insecure %v): error %v, expected one containing %q",
					c.listen, c.token, c.insecure, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("--listen %s (token %q, insecure %v): %v", c.listen, c.token, c.insecure, err)
		}
		if loopback != c.loopback {
			t.Errorf("--listen %s: loopback %v, expected %v", c.listen, loopback, c.loopback)
		}
	}
}

func TestCheckTokenRejectsSpaces(t *testing.T) {
	for _, token := range []string{" ", "token with space", "trailing ", "tab\there"} {
		if err := checkToken(token); err == nil {
			t.Errorf("token %q accepted, expected an error: a header cannot carry it intact", token)
		}
	}
	for _, token := range []string{"", "a", "0123456789abcdef0123456789abcdef", "p@ss-w0rd_!"} {
		if err := checkToken(token); err != nil {
			t.Errorf("token %q rejected: %v", token, err)
		}
	}
}
