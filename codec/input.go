package codec

import (
	"net/url"
	"strings"
	"time"
)

// InputKind classifies what an input string names, which decides how it is
// opened and whether it is live.
type InputKind int

const (
	// InputFile is a file path or a file:// URL.
	InputFile InputKind = iota
	// InputDevice is a capture device read through libavdevice, such as
	// /dev/video0 with the v4l2 format.
	InputDevice
	// InputNetwork is a network stream: rtsp, rtsps, udp, rtp, http, https,
	// srt and every other URL scheme FFmpeg has a protocol for, except file.
	InputNetwork
	// InputLavfi is a libavfilter graph read through libavdevice's lavfi
	// input, such as testsrc2=size=640x480:rate=30.
	InputLavfi
)

// lavfiPrefix is the shorthand prefix for lavfi inputs: "lavfi:GRAPH" is
// the same input as GRAPH with the lavfi format.
const lavfiPrefix = "lavfi:"

// DefaultLiveTimeout is the read timeout of capture devices and network
// streams when ReaderOptions.Timeout is zero: an open or read that blocks
// longer fails with ErrTimedOut.
const DefaultLiveTimeout = 5 * time.Second

// deviceFormats are the libavdevice input formats that read capture devices.
var deviceFormats = map[string]bool{
	"v4l2": true, "video4linux2": true, "x11grab": true, "fbdev": true, "kmsgrab": true,
	"dshow": true, "avfoundation": true, "gdigrab": true, "decklink": true,
}

// liveNetworkOptions are the demuxer options of network streams that the
// caller did not set: no buffering during stream analysis, and at most one
// second (in microseconds) or 1 MB of data analysed before the first frame.
var liveNetworkOptions = map[string]string{
	"fflags":          "nobuffer",
	"probesize":       "1000000",
	"analyzeduration": "1000000",
}

// ClassifyInput returns the kind of input that url names when opened with
// the input format name format, which may be empty.
func ClassifyInput(url, format string) InputKind {
	switch {
	case format == "lavfi" || strings.HasPrefix(url, lavfiPrefix):
		return InputLavfi
	case deviceFormats[format] || strings.HasPrefix(url, "/dev/"):
		return InputDevice
	}

	scheme, _, found := strings.Cut(url, "://")
	if found && scheme != "" && scheme != "file" {
		return InputNetwork
	}
	return InputFile
}

// Live reports whether frames of this kind arrive in real time, so a reader
// cannot wait for them without limit and may see the source end and return.
func (k InputKind) Live() bool { return k != InputFile }

func (k InputKind) String() string {
	switch k {
	case InputDevice:
		return "device"
	case InputNetwork:
		return "network"
	case InputLavfi:
		return "lavfi"
	default:
		return "file"
	}
}

// resolveInput turns the lavfi shorthand into a graph with the lavfi format,
// and gives a /dev/video path without a format the v4l2 format, since FFmpeg
// does not probe capture devices.
func resolveInput(url, format string) (string, string) {
	if format == "" && strings.HasPrefix(url, lavfiPrefix) {
		return strings.TrimPrefix(url, lavfiPrefix), "lavfi"
	}
	if format == "" && strings.HasPrefix(url, "/dev/video") {
		// NOTE: the tests have no capture device, so the v4l2 path past
		// the open errors has not run.
		return url, "v4l2"
	}
	return url, format
}

// RedactURL returns input with the user name and password of a URL
// removed, and the values of query parameters whose names suggest a secret
// (pass, key, token, secret, auth, sig) replaced, for logs and status pages.
// Other inputs are returned unchanged.
//
// NOTE: a secret in a query parameter of another name, or in the path, is
// not removed.
func RedactURL(input string) string {
	if !strings.Contains(input, "://") {
		return input
	}

	parsed, err := url.Parse(input)
	if err == nil {
		parsed.User = nil
		parsed.RawQuery = redactQuery(parsed.RawQuery)
		return parsed.String()
	}

	// url.Parse rejects some URLs that FFmpeg accepts, such as a password
	// with an unescaped "/". Everything before the last "@" ahead of the
	// query goes, which may cut more than the user information.
	scheme, rest, _ := strings.Cut(input, "://")
	beforeQuery, _, _ := strings.Cut(rest, "?")
	if at := strings.LastIndex(beforeQuery, "@"); at >= 0 {
		rest = rest[at+1:]
	}
	if path, query, found := strings.Cut(rest, "?"); found {
		rest = path + "?" + redactQuery(query)
	}
	return scheme + "://" + rest
}

// secretQueryWords mark query parameter names whose values RedactURL hides.
var secretQueryWords = []string{"pass", "key", "token", "secret", "auth", "sig"}

// redactQuery replaces the values of secret-looking parameters of a raw
// query, keeping the order and spelling of everything else.
func redactQuery(query string) string {
	if query == "" {
		return query
	}
	parts := strings.Split(query, "&")
	for i, part := range parts {
		name, _, found := strings.Cut(part, "=")
		lower := strings.ToLower(name)
		for _, word := range secretQueryWords {
			if found && strings.Contains(lower, word) {
				parts[i] = name + "=REDACTED"
				break
			}
		}
	}
	return strings.Join(parts, "&")
}

// PaceLavfi returns a lavfi input whose frames arrive at the graph's own
// rate, as ffmpeg's -re makes them, by appending the realtime filter: a
// lavfi source otherwise makes frames as fast as it can. Other inputs, and
// graphs with labels, several chains or a realtime filter already, are
// returned unchanged.
func PaceLavfi(input, format string) string {
	if ClassifyInput(input, format) != InputLavfi {
		return input
	}
	graph := strings.TrimPrefix(input, lavfiPrefix)
	if strings.ContainsAny(graph, ";[") || strings.Contains(graph, "realtime") {
		return input
	}
	return input + ",realtime"
}
