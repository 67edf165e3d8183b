package web

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gonum.org/v1/gonum/stat"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/codec/synth"
	"github.com/medvseg/medvseg/stream"
)

// glassWindow is how long the benchmark pools the pages' glass-to-glass
// latencies; the page keeps its last 300 samples, 10 s at 30 fps.
const glassWindow = 10 * time.Second

// BenchmarkGlassToGlass plays 3 s of the synthetic clip in a loop at 30 fps
// with the stamp on, opens 1 or 5 viewers in headless chromium on loopback,
// and reports the pooled glass-to-glass latency and the CPU use of the
// server process and of the browser over a 10 s window. Run it with
// -benchtime 1x: each iteration takes about 30 s.
//
// A 320x240 run with one viewer shows the figures when the machine is not
// the limit.
func BenchmarkGlassToGlass(b *testing.B) {
	for _, c := range []struct{ width, height, viewers int }{{640, 480, 1}, {640, 480, 5}, {320, 240, 1}} {
		b.Run(fmt.Sprintf("size=%dx%d/viewers=%d", c.width, c.height, c.viewers), func(b *testing.B) {
			for range b.N {
				benchmarkGlassToGlass(b, c.width, c.height, c.viewers)
			}
		})
	}
}

func benchmarkGlassToGlass(b *testing.B, width, height, viewers int) {
	clip := renderClip(b, synth.Options{Width: width, Height: height, Frames: 90, FPS: 30, RandomSeed: 1})
	newPacer := func(ctx context.Context) (stream.Source, error) {
		return stream.NewPacer(ctx, func() (stream.Source, error) {
			clip.next = 0
			return clip, nil
		}, true)
	}
	url := serveSource(b, newPacer, width, height, 30, SinkOptions{Stamp: true})
	ctx := startBrowser(b)

	tabs := make([]context.Context, viewers)
	for i := range tabs {
		tab, closeTab := openTab(b, ctx, url)
		b.Cleanup(closeTab)
		tabs[i] = tab
	}
	for i, tab := range tabs {
		waitFor(b, tab, fmt.Sprintf("viewer %d reading stamps", i+1), `latency.decodedFrames() >= 30`, 60*time.Second)
	}

	for _, tab := range tabs {
		evaluate[int](b, tab, `latency.reset()`)
	}
	serverBefore := processCPU()
	browserBefore := browserCPU(b)
	start := time.Now()
	time.Sleep(glassWindow)
	elapsed := time.Since(start)
	serverCPU := processCPU() - serverBefore
	browserUse := browserCPU(b) - browserBefore

	var samples []float64
	for _, tab := range tabs {
		samples = append(samples, evaluate[[]float64](b, tab, `latency.samples()`)...)
	}
	if len(samples) == 0 {
		b.Fatal("no glass-to-glass samples in the window")
	}
	slices.Sort(samples)

	b.ReportMetric(stat.Quantile(0.5, stat.Empirical, samples, nil), "p50-ms")
	b.ReportMetric(stat.Quantile(0.95, stat.Empirical, samples, nil), "p95-ms")
	b.ReportMetric(float64(len(samples))/float64(viewers)/elapsed.Seconds(), "frames/s/viewer")
	b.ReportMetric(100*serverCPU.Seconds()/elapsed.Seconds(), "server-cpu-%")
	b.ReportMetric(100*browserUse.Seconds()/elapsed.Seconds(), "browser-cpu-%")
}

// memoryClip replays frames rendered in advance. Rendering the synthetic
// scene at 640x480 takes more CPU than the whole live loop, so the
// benchmark renders it before the clock starts, as a camera would deliver
// ready frames.
type memoryClip struct {
	frames []*codec.Frame
	next   int
	info   codec.Info
}

func renderClip(b *testing.B, options synth.Options) *memoryClip {
	b.Helper()
	scene, err := synth.NewScene(options)
	if err != nil {
		b.Fatal(err)
	}
	clip := &memoryClip{info: codec.Info{URL: "memory", Width: options.Width, Height: options.Height,
		FrameRate: options.FPS, FrameCount: options.Frames}}
	for i := 0; i < options.Frames; i++ {
		frame := codec.NewFrame(options.Width, options.Height)
		scene.Render(i, frame, nil)
		clip.frames = append(clip.frames, frame)
	}
	return clip
}

func (c *memoryClip) Read(f *codec.Frame) error {
	if c.next == len(c.frames) {
		return io.EOF
	}
	f.CopyFrom(c.frames[c.next])
	c.next++
	return nil
}

func (c *memoryClip) Info() codec.Info { return c.info }

// processCPU returns the user and system CPU time of this process.
func processCPU() time.Duration {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
}

// browserCPU sums the user and system CPU time of the running chromium
// processes, read from /proc/PID/stat.
func browserCPU(b *testing.B) time.Duration {
	b.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		b.Fatal(err)
	}
	ticks := int64(0)
	for _, path := range stats {
		data, err := os.ReadFile(path)
		if err != nil {
			continue // the process ended
		}
		// The command name is in brackets and may contain spaces. The
		// fields after it start with the state, and utime and stime are
		// the 14th and 15th fields of the line.
		text := string(data)
		open, end := strings.IndexByte(text, '('), strings.LastIndexByte(text, ')')
		if open < 0 || end < open || !strings.HasPrefix(text[open+1:end], "chromium") {
			continue
		}
		fields := strings.Fields(text[end+1:])
		if len(fields) < 13 {
			continue
		}
		user, _ := strconv.ParseInt(fields[11], 10, 64)
		system, _ := strconv.ParseInt(fields[12], 10, 64)
		ticks += user + system
	}
	// Linux reports these times in clock ticks of 1/100 s (USER_HZ).
	return time.Duration(ticks) * 10 * time.Millisecond
}
