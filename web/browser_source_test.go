package web

import (
	"context"
	"net"
	"os/exec"
	"testing"
	"time"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/stream"
)

// startUDPSender runs the ffmpeg CLI sending a 320x240 test pattern in real
// time as MPEG-TS over UDP to address. The returned function kills it and
// waits for it to exit; cleanup calls it too.
func startUDPSender(t *testing.T, address string) func() {
	t.Helper()
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
		"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
		"-c:v", "mpeg2video", "-g", "5", "-f", "mpegts", "udp://"+address+"?pkt_size=1316")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the ffmpeg sender (install ffmpeg with make setup): %v", err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cmd.Process.Kill()
		cmd.Wait()
	}
	t.Cleanup(stop)
	return stop
}

func TestBrowserShowsSourceFailureAndRecovery(t *testing.T) {
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	address := conn.LocalAddr().String()
	conn.Close()
	url := "udp://" + address

	stopSender := startUDPSender(t, address)
	size := codec.Size{Width: 320, Height: 240}
	newSource := func(ctx context.Context) (stream.Source, error) {
		open := func(ctx context.Context, size codec.Size) (stream.Source, error) {
			return codec.OpenContext(ctx, url, codec.ReaderOptions{Size: size, Format: "mpegts",
				Timeout: time.Second})
		}
		return stream.NewReconnector(ctx, open, stream.ReconnectorOptions{URL: url, Size: size, FrameRate: 25,
			InitialDelay: 100 * time.Millisecond, MaxDelay: 500 * time.Millisecond})
	}
	page := serveSource(t, newSource, size.Width, size.Height, 25, SinkOptions{})
	ctx := startBrowser(t)

	tab, closeTab := openTab(t, ctx, page)
	defer closeTab()
	waitFor(t, tab, "source playing", `document.getElementById("source-state").textContent === "playing"`,
		30*time.Second)
	waitFor(t, tab, "decoding", framesShown+" >= 10", 30*time.Second)

	// The sender dies: the page shows the reconnecting source and why.
	stopSender()
	waitFor(t, tab, "source reconnecting", `document.getElementById("source-state").textContent === "reconnecting"`,
		20*time.Second)
	detail := evaluate[string](t, tab, `document.getElementById("source-detail").textContent`)
	if detail == "" {
		t.Error("no reason or retry time beside the reconnecting state")
	}
	t.Logf("page while the sender is down: reconnecting %s", detail)
	if state := evaluate[string](t, tab, `document.getElementById("state").textContent`); state != "connected" {
		t.Errorf("WebRTC connection %q while the source is down, expected it to stay connected", state)
	}

	// A new sender: the source plays again and the video moves on.
	startUDPSender(t, address)
	waitFor(t, tab, "source playing again", `document.getElementById("source-state").textContent === "playing"`,
		30*time.Second)
	waitFor(t, tab, "reconnect counted", `document.getElementById("source-detail").textContent.includes("1 reconnect")`,
		10*time.Second)
	before := evaluate[int](t, tab, framesShown)
	waitFor(t, tab, "decoding after recovery", framesShown+" >= "+itoa(before+25), 30*time.Second)
}
