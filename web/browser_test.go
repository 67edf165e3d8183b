package web

import (
	"context"
	"fmt"
	"image"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/rs/zerolog"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/codec/synth"
	"github.com/medvseg/medvseg/segment"
	"github.com/medvseg/medvseg/segment/onnx"
	"github.com/medvseg/medvseg/stream"
)

// ScreenshotEnv names a PNG path for the browser test's screenshot of the
// page; without it the screenshot goes to the test's temporary folder.
const ScreenshotEnv = "MEDVSEG_SCREENSHOT"

// capture is what captureScript returns: the displayed video frame
// classified per pixel as overlay green ('1') or not ('0'), and the index
// of the last frame the server had sent just before.
type capture struct {
	Width  int    `json:"width"`
	Height int    `json:"height"`
	Green  string `json:"green"`
	Frame  int    `json:"frame"`
}

// captureScript draws the playing video into a canvas and classifies its
// pixels. Opacity 1 paints the lesion pure green (0, 255, 0), which no
// pixel of the synthetic scene is near, so a loose box survives VP8 and
// chroma subsampling.
const captureScript = `(async () => {
  const stats = await (await fetch("/api/stats")).json();
  const video = document.getElementById("video");
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  const context = canvas.getContext("2d");
  context.drawImage(video, 0, 0);
  const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
  const green = new Array(canvas.width * canvas.height);
  for (let i = 0; i < green.length; i++) {
    const r = data[4 * i], g = data[4 * i + 1], b = data[4 * i + 2];
    green[i] = g > 150 && r < 110 && b < 110 ? "1" : "0";
  }
  return { width: canvas.width, height: canvas.height, green: green.join(""), frame: stats.frame };
})()`

// servePipeline runs the live loop on the synthetic clip with the
// colour-rule network and serves it on an ephemeral loopback port; edits,
// when given, change the server's Config first. It returns the page URL and
// the scene for ground truth.
func servePipeline(t testing.TB, options synth.Options, sinkOptions SinkOptions,
	edits ...func(*Config)) (string, *synth.Scene) {
	t.Helper()

	scene, err := synth.NewScene(options)
	if err != nil {
		t.Fatal(err)
	}
	source := synth.NewSource(scene)
	newPacer := func(ctx context.Context) (stream.Source, error) {
		return stream.NewPacer(ctx, func() (stream.Source, error) {
			source.Rewind()
			return source, nil
		}, true)
	}
	url := serveSource(t, newPacer, options.Width, options.Height, options.FPS, sinkOptions, edits...)
	return url, scene
}

// serveSource runs the live loop with the colour-rule network on the
// source that newSource makes, and serves it on an ephemeral loopback port.
// A source that reports its status gets it shown on the page. It returns
// the page URL; the loop and server stop at cleanup.
func serveSource(t testing.TB, newSource func(context.Context) (stream.Source, error), width, height int,
	fps float64, sinkOptions SinkOptions, edits ...func(*Config)) string {
	t.Helper()

	if err := segment.InitRuntime(segment.LibraryPath("")); err != nil {
		t.Fatalf("%v (make test sets %s)", err, segment.LibraryEnv)
	}
	rule, err := onnx.ColourRule(width, height)
	if err != nil {
		t.Fatal(err)
	}
	rulePath := filepath.Join(t.TempDir(), "colour-rule.onnx")
	if err := rule.WriteFile(rulePath); err != nil {
		t.Fatal(err)
	}
	model, err := segment.LoadModel(rulePath, segment.ModelOptions{Device: segment.DeviceCPU, IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { model.Close() })

	processor, err := stream.NewLiveProcessor(stream.NewModelSegmenter(model), stream.Options{KeyframeInterval: 5})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { processor.Close() })

	ctx, cancel := context.WithCancel(context.Background())
	source, err := newSource(ctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}

	sink, err := NewVideoSink(codec.CodecVP8, width, height, fps, 1_000_000, sinkOptions, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	config := Config{Sink: sink, Controls: processor, LoopbackOnly: true, Logger: zerolog.Nop()}
	if status, ok := source.(stream.SourceStatuser); ok {
		config.Source = status
	}
	for _, edit := range edits {
		edit(&config)
	}
	server, err := NewServer(config)
	if err != nil {
		t.Fatal(err)
	}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}

	loopDone := make(chan error, 1)
	serveDone := make(chan error, 1)
	go func() { loopDone <- processor.Run(ctx, source, sink) }()
	go func() { serveDone <- server.Serve(ctx, listener) }()
	t.Cleanup(func() {
		cancel()
		if err := <-loopDone; err != nil {
			t.Errorf("live loop: %v", err)
		}
		if err := <-serveDone; err != nil {
			t.Errorf("web server: %v", err)
		}
		if closer, ok := source.(interface{ Close() error }); ok {
			closer.Close()
		}
	})

	return "http://" + listener.Addr().String() + "/"
}

// startBrowser starts headless chromium with a fresh profile and the flags
// that keep it from reaching outside hosts. The browser stops at cleanup.
func startBrowser(t testing.TB) context.Context {
	t.Helper()

	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not found: install it with `make setup` (Debian package chromium): %v", err)
	}

	allocator, cancelAllocator := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
	)
	browser, cancelBrowser := chromedp.NewContext(allocator)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAllocator()
	})

	// The first run starts the browser for the life of its context. A
	// timeout there would stop the browser, so the limit goes on a child.
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("start chromium %s: %v", path, err)
	}
	ctx, cancel := context.WithTimeout(browser, 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestBrowserShowsLiveOverlay(t *testing.T) {
	options := synth.Options{Width: 320, Height: 240, Frames: 250, FPS: 25, RandomSeed: 1}
	url, scene := servePipeline(t, options, SinkOptions{})
	ctx := startBrowser(t)

	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1200, 760), chromedp.Navigate(url)); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}

	waitFor(t, ctx, "connection state connected", `document.getElementById("state").textContent === "connected"`,
		20*time.Second)
	waitFor(t, ctx, "10 decoded video frames",
		`document.getElementById("video").getVideoPlaybackQuality().totalVideoFrames >= 10`, 20*time.Second)

	before := evaluate[float64](t, ctx, `document.getElementById("video").currentTime`)
	time.Sleep(time.Second)
	after := evaluate[float64](t, ctx, `document.getElementById("video").currentTime`)
	if after <= before {
		t.Errorf("video.currentTime went from %.2f to %.2f in 1 s, expected playback to advance", before, after)
	}

	// Opacity 1 through the page's slider paints the lesion pure green.
	setRange(t, ctx, "opacity", "1")
	green := pollCapture(t, ctx, "overlay green on the lesion", 15*time.Second, func(c capture) string {
		return checkOverlayOnLesion(scene, options, c)
	})
	greenFull := countGreen(green)

	screenshot(t, ctx)
	logPageStats(t, ctx)

	// Overlay off through the page's checkbox: no overlay colour anywhere.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("overlay"))); err != nil {
		t.Fatalf("click the overlay checkbox: %v", err)
	}
	pollCapture(t, ctx, "no overlay green with the overlay off", 10*time.Second, func(c capture) string {
		if n := countGreen(c); n > 20 {
			return "overlay-green pixels remain: " + itoa(n)
		}
		return ""
	})

	// Overlay on at opacity 0 leaves only the 2-pixel contour.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("overlay"))); err != nil {
		t.Fatalf("click the overlay checkbox: %v", err)
	}
	setRange(t, ctx, "opacity", "0")
	pollCapture(t, ctx, "contour only at opacity 0", 10*time.Second, func(c capture) string {
		n := countGreen(c)
		if n == 0 {
			return "no overlay green: the contour is missing"
		}
		if 2*n > greenFull {
			return "overlay-green pixels " + itoa(n) + ", expected under half of " + itoa(greenFull) +
				" at opacity 1"
		}
		return ""
	})
}

// checkOverlayOnLesion compares the overlay green with the ground-truth
// masks of the frames around the one last sent, since the browser shows a
// frame a little after the server sends it. It returns "" when the green
// lies on the lesion and covers most of it, else the reason.
func checkOverlayOnLesion(scene *synth.Scene, options synth.Options, c capture) string {
	if c.Width != options.Width || c.Height != options.Height {
		return "video is " + itoa(c.Width) + "x" + itoa(c.Height)
	}
	if c.Frame < 0 {
		return "no frame sent yet"
	}

	const window = 12
	union := make([]bool, c.Width*c.Height)
	inAll := make([]bool, c.Width*c.Height)
	for i := range inAll {
		inAll[i] = true
	}
	frame := codec.NewFrame(options.Width, options.Height)
	mask := image.NewGray(image.Rect(0, 0, options.Width, options.Height))
	for index := c.Frame - window; index <= c.Frame+1; index++ {
		scene.Render(((index%options.Frames)+options.Frames)%options.Frames, frame, mask)
		for i, v := range mask.Pix {
			union[i] = union[i] || v > 0
			inAll[i] = inAll[i] && v > 0
		}
	}

	lesionCore := 0
	for _, in := range inAll {
		if in {
			lesionCore++
		}
	}
	if lesionCore < 500 {
		return "the lesion is out of view around frame " + itoa(c.Frame)
	}

	near := dilate(union, c.Width, c.Height, 3)
	green, greenNear, coreCovered := 0, 0, 0
	for i, ch := range c.Green {
		if ch != '1' {
			continue
		}
		green++
		if near[i] {
			greenNear++
		}
		if inAll[i] {
			coreCovered++
		}
	}

	if green == 0 {
		return "no overlay green"
	}
	if precision := float64(greenNear) / float64(green); precision < 0.9 {
		return "only " + percent(precision) + " of the overlay green lies on the lesion"
	}
	if recall := float64(coreCovered) / float64(lesionCore); recall < 0.6 {
		return "overlay green covers only " + percent(recall) + " of the lesion"
	}
	return ""
}

// pollCapture captures the video until check returns "" or timeout passes,
// then fails with the last reason.
func pollCapture(t *testing.T, ctx context.Context, what string, timeout time.Duration,
	check func(capture) string) capture {
	t.Helper()

	deadline := time.Now().Add(timeout)
	var reasons []string
	for {
		c := evaluate[capture](t, ctx, captureScript)
		reason := check(c)
		if reason == "" {
			return c
		}
		reasons = append(reasons, "frame "+itoa(c.Frame)+": "+reason)
		if time.Now().After(deadline) {
			t.Fatalf("%s: not seen within %v:\n%s", what, timeout, strings.Join(reasons, "\n"))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func waitFor(t testing.TB, ctx context.Context, what, condition string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if evaluate[bool](t, ctx, condition) {
			return
		}
		if time.Now().After(deadline) {
			state := evaluate[string](t, ctx, `document.getElementById("state").textContent`)
			t.Fatalf("%s: not reached within %v (connection state %q)", what, timeout, state)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// evaluate runs a script in the page, awaiting it when it returns a promise.
func evaluate[T any](t testing.TB, ctx context.Context, script string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](script, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %.60q: %v", script, err)
	}
	return v
}

// setRange moves a range input of the page and fires its input event, as a drag would.
func setRange(t *testing.T, ctx context.Context, id, value string) {
	t.Helper()
	evaluate[bool](t, ctx, `(() => { const e = document.getElementById("`+id+`"); e.value = "`+value+`";
		e.dispatchEvent(new Event("input")); return true; })()`)
}

func screenshot(t testing.TB, ctx context.Context) {
	t.Helper()
	path := os.Getenv(ScreenshotEnv)
	if path == "" {
		path = filepath.Join(t.TempDir(), "serve.png")
	}

	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatalf("write screenshot: %v", err)
	}
	t.Logf("screenshot of the page: %s", path)
}

func logPageStats(t *testing.T, ctx context.Context) {
	t.Helper()
	stats := evaluate[string](t, ctx, `document.getElementById("stats").innerText`)
	latency := evaluate[string](t, ctx, `document.getElementById("latency").innerText`)
	t.Logf("page stats:\n%s\nlatency:\n%s", stats, latency)
}

func countGreen(c capture) int {
	n := 0
	for _, ch := range c.Green {
		if ch == '1' {
			n++
		}
	}
	return n
}

// dilate grows a binary image by radius pixels (a square neighbourhood).
func dilate(in []bool, width, height, radius int) []bool {
	out := make([]bool, len(in))
	for y := 0; y < height; y++ {
		for x := 0; x < width; x++ {
			if !in[y*width+x] {
				continue
			}
			for dy := -radius; dy <= radius; dy++ {
				for dx := -radius; dx <= radius; dx++ {
					nx, ny := x+dx, y+dy
					if nx >= 0 && ny >= 0 && nx < width && ny < height {
						out[ny*width+nx] = true
					}
				}
			}
		}
	}
	return out
}

func itoa(n int) string { return strconv.Itoa(n) }

func percent(v float64) string { return fmt.Sprintf("%.0f%%", 100*v) }
