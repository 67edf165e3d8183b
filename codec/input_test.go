package codec_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medvseg/medvseg/codec"
)

func TestClassifyInput(t *testing.T) {
	cases := []struct {
		url, format string
		want        codec.InputKind
	}{
		{"clip.mp4", "", codec.InputFile},
		{"file:///data/clip.mp4", "", codec.InputFile},
		{"clip.mjpeg", "mjpeg", codec.InputFile},
		{"/dev/video0", "", codec.InputDevice},
		{"/dev/video0", "v4l2", codec.InputDevice},
		{"rtsp://user:secret@10.0.0.5/stream", "", codec.InputNetwork},
		{"udp://127.0.0.1:5000", "mpegts", codec.InputNetwork},
		{"http://127.0.0.1:8090/feed.mjpeg", "", codec.InputNetwork},
		{"srt://127.0.0.1:9000", "", codec.InputNetwork},
		{"lavfi:testsrc2=size=640x480", "", codec.InputLavfi},
		{"testsrc2=size=640x480", "lavfi", codec.InputLavfi},
	}
	for _, c := range cases {
		if got := codec.ClassifyInput(c.url, c.format); got != c.want {
			t.Errorf("ClassifyInput(%q, %q) = %v, want %v", c.url, c.format, got, c.want)
		}
	}
}

func TestRedactURL(t *testing.T) {
	cases := []struct{ in, want string }{
		{"rtsp://user:secret@10.0.0.5:554/stream", "rtsp://10.0.0.5:554/stream"},
		{"rtsp://10.0.0.5/stream", "rtsp://10.0.0.5/stream"},
		{"http://admin@127.0.0.1:8080/feed?x=1", "http://127.0.0.1:8080/feed?x=1"},
		{"rtsp://user:pa%zz@10.0.0.5/stream", "rtsp://10.0.0.5/stream"},
		{"/dev/video0", "/dev/video0"},
		{"lavfi:testsrc2=size=640x480", "lavfi:testsrc2=size=640x480"},
		{"http://127.0.0.1/live.ts?api_key=K1&x=1", "http://127.0.0.1/live.ts?api_key=REDACTED&x=1"},
		{"srt://127.0.0.1:9000?mode=caller&passphrase=abcdefghij", "srt://127.0.0.1:9000?mode=caller&passphrase=REDACTED"},
		{"rtsp://u:p%zz@10.0.0.5/s?token=T", "rtsp://10.0.0.5/s?token=REDACTED"},
	}
	for _, c := range cases {
		if got := codec.RedactURL(c.in); got != c.want {
			t.Errorf("RedactURL(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestPaceLavfi(t *testing.T) {
	cases := []struct{ input, format, want string }{
		{"lavfi:testsrc2=size=640x480:rate=30", "", "lavfi:testsrc2=size=640x480:rate=30,realtime"},
		{"testsrc2=rate=30,format=gray", "lavfi", "testsrc2=rate=30,format=gray,realtime"},
		{"lavfi:testsrc2,realtime", "", "lavfi:testsrc2,realtime"},
		{"lavfi:testsrc2[a];[a]null", "", "lavfi:testsrc2[a];[a]null"},
		{"udp://127.0.0.1:5004", "mpegts", "udp://127.0.0.1:5004"},
		{"clip.mp4", "", "clip.mp4"},
	}
	for _, c := range cases {
		if got := codec.PaceLavfi(c.input, c.format); got != c.want {
			t.Errorf("PaceLavfi(%q, %q) = %q, want %q", c.input, c.format, got, c.want)
		}
	}
}

func TestOpenLavfi(t *testing.T) {
	cases := []struct {
		name, url string
		options   codec.ReaderOptions
	}{
		{"shorthand", "lavfi:testsrc2=size=640x480:rate=30", codec.ReaderOptions{}},
		{"format", "testsrc2=size=640x480:rate=30", codec.ReaderOptions{Format: "lavfi"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := codec.Open(c.url, c.options)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()

			info := r.Info()
			if info.Width != 640 || info.Height != 480 {
				t.Errorf("info size = %dx%d, want 640x480", info.Width, info.Height)
			}
			if info.FrameRate != 30 {
				t.Errorf("info frame rate = %v, want 30", info.FrameRate)
			}

			var f codec.Frame
			previous := time.Duration(-1)
			for i := range 10 {
				if err := r.Read(&f); err != nil {
					t.Fatalf("read frame %d: %v", i, err)
				}
				if f.Width != 640 || f.Height != 480 {
					t.Errorf("frame %d size = %dx%d, want 640x480", i, f.Width, f.Height)
				}
				if f.PTS <= previous {
					t.Errorf("frame %d PTS %v not after %v", i, f.PTS, previous)
				}
				previous = f.PTS
			}
		})
	}
}

func TestLavfiEnds(t *testing.T) {
	frames, _ := readAll(t, "lavfi:testsrc2=size=320x240:rate=25:duration=1", codec.ReaderOptions{})
	if len(frames) != 25 {
		t.Errorf("frames = %d, want 25", len(frames))
	}
}

// ffmpegCLI runs the ffmpeg command line tool and fails the test on error.
func ffmpegCLI(t *testing.T, args ...string) {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Skip("the ffmpeg command line tool is not installed")
	}

	args = append([]string{"-hide_banner", "-loglevel", "error", "-y"}, args...)
	if out, err := exec.Command("ffmpeg", args...).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func TestReadMJPEG(t *testing.T) {
	const width, height = 320, 240
	for _, pixelFormat := range []string{"yuvj422p", "yuvj420p", "yuvj444p"} {
		t.Run(pixelFormat, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "clip.mjpeg")
			ffmpegCLI(t, "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=1",
				"-c:v", "mjpeg", "-q:v", "2", "-pix_fmt", pixelFormat, "-f", "mjpeg", path)

			// The ffmpeg CLI's own BGR decode is the reference, so a wrong
			// range or chroma layout shows as a drop in PSNR.
			rawPath := filepath.Join(dir, "clip.bgr")
			ffmpegCLI(t, "-f", "mjpeg", "-i", path, "-f", "rawvideo", "-pix_fmt", "bgr24", rawPath)
			raw, err := os.ReadFile(rawPath)
			if err != nil {
				t.Fatal(err)
			}

			got, info := readAll(t, path, codec.ReaderOptions{Format: "mjpeg"})
			if info.Codec != "mjpeg" {
				t.Errorf("codec = %q, want mjpeg", info.Codec)
			}
			frameBytes := width * height * 3
			if len(got) != len(raw)/frameBytes {
				t.Fatalf("frames = %d, want %d", len(got), len(raw)/frameBytes)
			}

			for i, f := range got {
				want := &codec.Frame{Width: width, Height: height, Pix: raw[i*frameBytes : (i+1)*frameBytes]}
				if p := psnr(f, want); p < 40 {
					t.Errorf("frame %d PSNR against the ffmpeg CLI = %.1f dB, want >= 40", i, p)
				}
			}
		})
	}
}

func TestOpenDeviceErrors(t *testing.T) {
	cases := []struct {
		name, url string
		options   codec.ReaderOptions
		is        error
		mention   string
	}{
		{"missing device", "/dev/video99", codec.ReaderOptions{}, codec.ErrNotFound, "v4l2-ctl"},
		{"not a capture device", "/dev/null", codec.ReaderOptions{Format: "v4l2"}, nil, "-list_formats"},
		{"unknown format", "/dev/video99", codec.ReaderOptions{Format: "nosuchformat"}, codec.ErrInvalidOption,
			"ffmpeg -formats"},
		{"unknown option", "lavfi:testsrc2", codec.ReaderOptions{FormatOptions: map[string]string{"no_such_option": "1"}},
			codec.ErrInvalidOption, "no_such_option=1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := codec.Open(c.url, c.options)
			if err == nil {
				r.Close()
				t.Fatalf("open %q: no error", c.url)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("open %q: error %q is not %q", c.url, err, c.is)
			}
			if !strings.Contains(err.Error(), c.mention) {
				t.Errorf("open %q: error %q does not mention %q", c.url, err, c.mention)
			}
		})
	}
}

// freeUDPAddress returns a 127.0.0.1 address with a UDP port that was free
// a moment ago.
func freeUDPAddress(t *testing.T) string {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.LocalAddr().String()
}

func TestOpenSilentStream(t *testing.T) {
	url := "udp://" + freeUDPAddress(t)

	t.Run("timeout", func(t *testing.T) {
		r, err := codec.Open(url, codec.ReaderOptions{Format: "mpegts", Timeout: 500 * time.Millisecond})
		if err == nil {
			r.Close()
			t.Fatalf("open %s with no sender: no error", url)
		}
		if !errors.Is(err, codec.ErrTimedOut) {
			t.Errorf("open %s with no sender: error %q is not ErrTimedOut", url, err)
		}
	})

	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		timer := time.AfterFunc(300*time.Millisecond, cancel)
		defer timer.Stop()

		r, err := codec.OpenContext(ctx, url, codec.ReaderOptions{Format: "mpegts", Timeout: -1})
		if err == nil {
			r.Close()
			t.Fatalf("open %s with no sender: no error", url)
		}
		if !errors.Is(err, context.Canceled) {
			t.Errorf("open %s cancelled: error %q is not context.Canceled", url, err)
		}
	})
}

func TestReadStreamEnds(t *testing.T) {
	// ffmpeg listens as an HTTP server and sends one second of MJPEG to
	// the first client, then exits, so the reader sees the stream end.
	// Until ffmpeg listens, opens fail and are retried.
	address := freeTCPAddress(t)
	startFFmpeg(t, "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=1",
		"-c:v", "mjpeg", "-pix_fmt", "yuvj422p", "-f", "mjpeg", "-listen", "1", "http://"+address+"/feed")

	url := "http://" + address + "/feed"
	var r *codec.Reader
	var err error
	for range 50 {
		r, err = codec.Open(url, codec.ReaderOptions{Format: "mjpeg"})
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	defer r.Close()

	var f codec.Frame
	frames := 0
	for {
		err := r.Read(&f)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read %s frame %d: %v", url, frames, err)
		}
		frames++
	}
	// The nobuffer flag of network streams drops the packets that stream
	// analysis reads, here the first frame or so.
	if frames < 20 || frames > 25 {
		t.Errorf("read %s: %d frames before the end, want 20 to 25", url, frames)
	}
}

// freeTCPAddress returns a 127.0.0.1 address with a TCP port that was free
// a moment ago.
func freeTCPAddress(t *testing.T) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	return listener.Addr().String()
}

// startFFmpeg starts the ffmpeg command line tool in the background and
// kills it when the test ends.
func startFFmpeg(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Skip("the ffmpeg command line tool is not installed")
	}

	args = append([]string{"-hide_banner", "-loglevel", "error", "-nostdin"}, args...)
	cmd := exec.Command("ffmpeg", args...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start ffmpeg: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}
