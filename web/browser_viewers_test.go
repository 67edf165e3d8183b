package web

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/medvseg/medvseg/codec/synth"
)

// framesShown is the page's count of decoded video frames.
const framesShown = `document.getElementById("video").getVideoPlaybackQuality().totalVideoFrames`

// openTab opens url in a new tab of the browser that ctx belongs to. The
// tab closes when its context is cancelled.
func openTab(t testing.TB, ctx context.Context, url string) (context.Context, context.CancelFunc) {
	t.Helper()
	tab, cancel := chromedp.NewContext(ctx)
	if err := chromedp.Do(tab, chromedp.EmulateViewport(1000, 700), chromedp.Navigate(url)); err != nil {
		cancel()
		t.Fatalf("open %s in a new tab: %v", url, err)
	}
	return tab, cancel
}

func TestBrowserTwoViewersOneLeaves(t *testing.T) {
	options := synth.Options{Width: 320, Height: 240, Frames: 250, FPS: 25, RandomSeed: 1}
	url, _ := servePipeline(t, options, SinkOptions{})
	ctx := startBrowser(t)

	first, closeFirst := openTab(t, ctx, url)
	defer closeFirst()
	second, closeSecond := openTab(t, ctx, url)
	defer closeSecond()

	for name, tab := range map[string]context.Context{"first": first, "second": second} {
		waitFor(t, tab, name+" viewer connected", `document.getElementById("state").textContent === "connected"`,
			30*time.Second)
		waitFor(t, tab, name+" viewer decoding", framesShown+" >= 10", 30*time.Second)
	}
	waitFor(t, second, "2 viewers in the stats", `document.getElementById("viewers").textContent === "2"`,
		10*time.Second)

	// The first tab closes; its page sends the WHEP DELETE as it goes.
	closeFirst()
	waitFor(t, second, "1 viewer in the stats after the other left",
		`document.getElementById("viewers").textContent === "1"`, 20*time.Second)

	before := evaluate[int](t, second, framesShown)
	waitFor(t, second, "the remaining viewer still decoding", framesShown+" >= "+itoa(before+25), 20*time.Second)
}

func TestBrowserTokenRequired(t *testing.T) {
	const token = "token-for-the-browser-test"
	options := synth.Options{Width: 320, Height: 240, Frames: 250, FPS: 25, RandomSeed: 1}
	url, _ := servePipeline(t, options, SinkOptions{}, func(c *Config) { c.Token = token })
	ctx := startBrowser(t)

	without, closeWithout := openTab(t, ctx, url)
	defer closeWithout()
	waitFor(t, without, "the page names the missing token",
		`document.getElementById("auth-error").textContent.includes("#token=")`, 20*time.Second)
	waitFor(t, without, "connection failed without the token",
		`document.getElementById("state").textContent === "failed"`, 10*time.Second)

	with, closeWith := openTab(t, ctx, url+"#token="+token)
	defer closeWith()
	waitFor(t, with, "connected with the token", `document.getElementById("state").textContent === "connected"`,
		30*time.Second)
	waitFor(t, with, "decoding with the token", framesShown+" >= 10", 30*time.Second)
	if location := evaluate[string](t, with, `location.href`); strings.Contains(location, token) {
		t.Errorf("the token stays in the address bar (%s), expected the page to remove it", location)
	}

	resp, err := http.Get(strings.TrimSuffix(url, "/") + "/api/stats")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /api/stats without the token: status %d, expected 401", resp.StatusCode)
	}
}

func TestBrowserShowsGlassToGlassLatency(t *testing.T) {
	options := synth.Options{Width: 320, Height: 240, Frames: 250, FPS: 25, RandomSeed: 1}
	url, _ := servePipeline(t, options, SinkOptions{Stamp: true})
	ctx := startBrowser(t)

	tab, closeTab := openTab(t, ctx, url)
	defer closeTab()
	waitFor(t, tab, "connected", `document.getElementById("state").textContent === "connected"`, 30*time.Second)
	waitFor(t, tab, "glass-to-glass figure on the page",
		`document.getElementById("glass").textContent.startsWith("p50")`, 30*time.Second)
	waitFor(t, tab, "25 stamps read", `latency.decodedFrames() >= 25`, 30*time.Second)

	summary := evaluate[struct {
		P50   float64 `json:"p50"`
		P95   float64 `json:"p95"`
		Count int     `json:"count"`
	}](t, tab, `latency.summary()`)
	text := evaluate[string](t, tab, `document.getElementById("glass").textContent`)
	t.Logf("glass to glass on the page: %s", text)
	// One frame at 25 fps is 40 ms; capture, segmentation, encoding, the
	// network and the browser's decoder all lie between.
	if summary.P50 <= 0 || summary.P50 > 2000 {
		t.Errorf("glass-to-glass p50 %.1f ms, expected a latency between 0 and 2 s", summary.P50)
	}
	if summary.P95 < summary.P50 {
		t.Errorf("p95 %.1f ms below p50 %.1f ms", summary.P95, summary.P50)
	}

	// The page reports its samples; the server shows them as "displayed".
	waitFor(t, tab, "displayed latency in the server's stats",
		`fetch("/api/stats").then(r => r.json()).then(s => (s.latency_ms.displayed || {}).count > 0)`, 15*time.Second)
	screenshot(t, tab)
}

func TestBrowserReconnectsAfterServerCloses(t *testing.T) {
	options := synth.Options{Width: 320, Height: 240, Frames: 250, FPS: 25, RandomSeed: 1}
	url, _ := servePipeline(t, options, SinkOptions{})
	ctx := startBrowser(t)

	tab, closeTab := openTab(t, ctx, url)
	defer closeTab()
	waitFor(t, tab, "connected", `document.getElementById("state").textContent === "connected"`, 30*time.Second)
	first := evaluate[string](t, tab, `resource`)

	// The server ends the viewer's session, as a restart would.
	req, err := http.NewRequest(http.MethodDelete, strings.TrimSuffix(url, "/")+first, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE %s: status %d, expected 200", first, resp.StatusCode)
	}

	waitFor(t, tab, "a new session", `resource !== null && resource !== "`+first+`"`, 40*time.Second)
	waitFor(t, tab, "connected again", `document.getElementById("state").textContent === "connected"`,
		30*time.Second)
	before := evaluate[int](t, tab, framesShown)
	waitFor(t, tab, "decoding after reconnecting", framesShown+" >= "+itoa(before+25), 30*time.Second)
}
