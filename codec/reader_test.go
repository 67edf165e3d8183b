package codec_test

import (
	"bytes"
	"errors"
	"image"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/codec/synth"
)

// endoData is the shared real-footage folder, relative to this package.
const endoData = "../../shared/data/endo"

// writeSynthClip encodes n synth frames of the given size and returns the
// path and the frames that went in.
func writeSynthClip(t testing.TB, dir string, width, height, n int, options codec.WriterOptions) (string, []*codec.Frame) {
	t.Helper()

	scene, err := synth.NewScene(synth.Options{Width: width, Height: height, Frames: n, FPS: 25, RandomSeed: 7})
	if err != nil {
		t.Fatal(err)
	}

	options.Width, options.Height, options.FrameRate = width, height, 25
	path := filepath.Join(dir, "clip.mp4")
	w, err := codec.Create(path, options)
	if err != nil {
		t.Fatal(err)
	}

	var frames []*codec.Frame
	for i := 0; i < n; i++ {
		f := codec.NewFrame(width, height)
		scene.Render(i, f, nil)
		if err := w.Write(f); err != nil {
			t.Fatal(err)
		}
		frames = append(frames, f)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	return path, frames
}

func readAll(t testing.TB, path string, options codec.ReaderOptions) ([]*codec.Frame, codec.Info) {
	t.Helper()

	r, err := codec.Open(path, options)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	var frames []*codec.Frame
	for {
		f := &codec.Frame{}
		err := r.Read(f)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read %s frame %d: %v", path, len(frames), err)
		}
		frames = append(frames, f)
	}
	return frames, r.Info()
}

// psnr returns the peak signal-to-noise ratio in dB between two BGR frames.
func psnr(a, b *codec.Frame) float64 {
	var sum float64
	for i := range a.Pix {
		d := float64(a.Pix[i]) - float64(b.Pix[i])
		sum += d * d
	}
	mse := sum / float64(len(a.Pix))
	if mse == 0 {
		return math.Inf(1)
	}
	return 10 * math.Log10(255*255/mse)
}

func TestRoundTripKeepsFramesAndQuality(t *testing.T) {
	dir := t.TempDir()
	path, original := writeSynthClip(t, dir, 320, 240, 30, codec.WriterOptions{})

	decoded, info := readAll(t, path, codec.ReaderOptions{})
	if len(decoded) != len(original) {
		t.Fatalf("first decode: %d frames, expected %d", len(decoded), len(original))
	}
	if info.Width != 320 || info.Height != 240 {
		t.Errorf("first decode: size %dx%d, expected 320x240", info.Width, info.Height)
	}
	if math.Abs(info.FrameRate-25) > 1e-6 {
		t.Errorf("first decode: frame rate %v, expected 25", info.FrameRate)
	}

	for i, f := range decoded {
		if f.Index != i {
			t.Errorf("frame %d: index %d", i, f.Index)
		}
		if want := int64(i) * 40; f.PTS.Milliseconds() != want {
			t.Errorf("frame %d: PTS %v, expected %d ms", i, f.PTS, want)
		}
		if p := psnr(f, original[i]); p < 35 {
			t.Errorf("frame %d: PSNR %.1f dB after one encode, expected at least 35", i, p)
		}
	}

	// Encode the decoded frames again: a second generation must keep every frame too.
	second := filepath.Join(dir, "second.mp4")
	w, err := codec.Create(second, codec.WriterOptions{EncoderOptions: codec.EncoderOptions{Width: 320, Height: 240, FrameRate: 25}})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range decoded {
		if err := w.Write(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	again, _ := readAll(t, second, codec.ReaderOptions{})
	if len(again) != len(original) {
		t.Fatalf("second decode: %d frames, expected %d", len(again), len(original))
	}
	for i, f := range again {
		if p := psnr(f, original[i]); p < 32 {
			t.Errorf("frame %d: PSNR %.1f dB after two encodes, expected at least 32", i, p)
		}
	}
}

func TestSegColVideosDecode(t *testing.T) {
	clips, err := filepath.Glob(filepath.Join(endoData, "segcol", "*", "video_10fps.mp4"))
	if err != nil || len(clips) == 0 {
		t.Fatalf("no SegCol videos under %s: the shared endoscopy data is missing", endoData)
	}

	for _, clip := range clips {
		frames, info := readAll(t, clip, codec.ReaderOptions{})
		name := filepath.Base(filepath.Dir(clip))
		if len(frames) != 10 {
			t.Errorf("%s: %d frames, expected 10", name, len(frames))
		}
		if info.Width != 640 || info.Height != 480 {
			t.Errorf("%s: size %dx%d, expected 640x480", name, info.Width, info.Height)
		}
		for _, f := range frames {
			if f.Width != 640 || f.Height != 480 || len(f.Pix) != 640*480*3 {
				t.Errorf("%s: frame %d is %dx%d with %d bytes", name, f.Index, f.Width, f.Height, len(f.Pix))
			}
		}
	}
}

func TestReaderAppliesRotation(t *testing.T) {
	dir := t.TempDir()
	path, original := writeSynthClip(t, dir, 160, 96, 3, codec.WriterOptions{Rotation: 90})

	frames, info := readAll(t, path, codec.ReaderOptions{})
	if info.Rotation != 90 {
		t.Fatalf("rotation %d, expected 90", info.Rotation)
	}
	if info.Width != 96 || info.Height != 160 {
		t.Fatalf("info size %dx%d, expected 96x160", info.Width, info.Height)
	}
	if len(frames) != 3 || frames[0].Width != 96 || frames[0].Height != 160 {
		t.Fatalf("decoded %d frames of %dx%d, expected 3 of 96x160", len(frames), frames[0].Width, frames[0].Height)
	}

	// A clockwise quarter turn moves source pixel (x, y) to (H-1-y, x).
	rotated := codec.NewFrame(96, 160)
	src := original[0]
	for y := 0; y < src.Height; y++ {
		for x := 0; x < src.Width; x++ {
			copy(rotated.Pix[(x*96+(95-y))*3:][:3], src.Pix[(y*src.Width+x)*3:][:3])
		}
	}
	if p := psnr(frames[0], rotated); p < 30 {
		t.Errorf("rotated frame: PSNR %.1f dB against the source turned clockwise, expected at least 30", p)
	}
}

func TestReaderResamplesAndResizes(t *testing.T) {
	dir := t.TempDir()
	path, _ := writeSynthClip(t, dir, 160, 120, 50, codec.WriterOptions{})

	frames, info := readAll(t, path, codec.ReaderOptions{FPS: 10, Size: codec.Size{Width: 80, Height: 64}})
	if len(frames) != 20 {
		t.Errorf("50 frames at 25 fps sampled at 10 fps: %d frames, expected 20", len(frames))
	}
	if info.Width != 80 || info.Height != 64 || info.FrameRate != 10 {
		t.Errorf("info %dx%d at %v fps, expected 80x64 at 10", info.Width, info.Height, info.FrameRate)
	}
	for i, f := range frames {
		if f.Width != 80 || f.Height != 64 {
			t.Fatalf("frame %d: %dx%d, expected 80x64", i, f.Width, f.Height)
		}
		if want := int64(i) * 100; f.PTS.Milliseconds() != want {
			t.Errorf("frame %d: PTS %v, expected %d ms", i, f.PTS, want)
		}
	}
}

func TestReaderBadInput(t *testing.T) {
	dir := t.TempDir()
	good, _ := writeSynthClip(t, dir, 160, 120, 20, codec.WriterOptions{})
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}

	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte("this is not a video\n"), 0o644)

	truncated := filepath.Join(dir, "truncated.mp4")
	os.WriteFile(truncated, data[:len(data)/2], 0o644)

	// An unknown sample entry type in place of avc1 leaves the demuxer with
	// no codec. The first avc1 after the stsd box is the sample entry; an
	// earlier one is a compatible brand of the ftyp box.
	unknown := filepath.Join(dir, "unknown.mp4")
	stsd := bytes.Index(data, []byte("stsd"))
	entry := bytes.Index(data[max(stsd, 0):], []byte("avc1"))
	if stsd < 0 || entry < 0 {
		t.Fatal("test clip has no avc1 sample entry to patch")
	}
	patched := bytes.Clone(data)
	copy(patched[stsd+entry:], "zzzz")
	os.WriteFile(unknown, patched, 0o644)

	// With the index at the front, a cut file opens and ends early.
	faststart := filepath.Join(dir, "faststart.mp4")
	cmd := exec.Command("ffmpeg", "-v", "error", "-i", good, "-c", "copy", "-movflags", "+faststart", faststart)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("remux with ffmpeg: %v\n%s", err, out)
	}
	whole, _ := os.ReadFile(faststart)
	cutShort := filepath.Join(dir, "cut-short.mp4")
	os.WriteFile(cutShort, whole[:len(whole)*6/10], 0o644)

	cases := []struct {
		name string
		path string
		want error
	}{
		{"mp4 cut short", cutShort, codec.ErrTruncated},
		{"missing file", filepath.Join(dir, "absent.mp4"), codec.ErrNotFound},
		{"missing file URL", "file://" + filepath.Join(dir, "absent.mp4"), codec.ErrNotFound},
		{"text file", text, codec.ErrNotVideo},
		{"text file URL", "file://" + text, codec.ErrNotVideo},
		{"truncated mp4", truncated, codec.ErrTruncated},
		{"unknown codec", unknown, codec.ErrUnsupportedCodec},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := readUntilError(c.path)
			if !errors.Is(err, c.want) {
				t.Fatalf("error %v, expected %v", err, c.want)
			}
			if !bytes.Contains([]byte(err.Error()), []byte(c.path)) {
				t.Errorf("error %q does not name the path %q", err, c.path)
			}
		})
	}
}

// readUntilError opens and reads a whole video and returns the first error other than io.EOF.
func readUntilError(path string) error {
	r, err := codec.Open(path, codec.ReaderOptions{})
	if err != nil {
		return err
	}
	defer r.Close()

	f := &codec.Frame{}
	for {
		if err := r.Read(f); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

func TestReaderReusesFrameBuffer(t *testing.T) {
	dir := t.TempDir()
	path, _ := writeSynthClip(t, dir, 160, 120, 5, codec.WriterOptions{})

	r, err := codec.Open(path, codec.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	f := codec.NewFrame(160, 120)
	buffer := &f.Pix[0]
	for i := 0; i < 5; i++ {
		if err := r.Read(f); err != nil {
			t.Fatal(err)
		}
		if &f.Pix[0] != buffer {
			t.Fatalf("frame %d: the reader replaced the caller's buffer", i)
		}
	}
}

func TestFrameNumber(t *testing.T) {
	cases := []struct {
		name   string
		number int
		ok     bool
	}{
		{"7.png", 7, true},
		{"0007.png", 7, true},
		{"frame_0007.png", 7, true},
		{"masks/0280.png", 280, true},
		{"seq01_12.png", 12, true},
		{"mask.png", 0, false},
	}
	for _, c := range cases {
		n, ok := codec.FrameNumber(c.name)
		if n != c.number || ok != c.ok {
			t.Errorf("FrameNumber(%q) = %d, %v; expected %d, %v", c.name, n, ok, c.number, c.ok)
		}
	}

	if got := codec.FrameName(7); got != "0007.png" {
		t.Errorf("FrameName(7) = %q, expected 0007.png", got)
	}
	if got := codec.FrameName(12345); got != "12345.png" {
		t.Errorf("FrameName(12345) = %q, expected 12345.png", got)
	}
}

func TestParseSize(t *testing.T) {
	cases := []struct {
		in   string
		want codec.Size
		ok   bool
	}{
		{"640x480", codec.Size{Width: 640, Height: 480}, true},
		{"512X512", codec.Size{Width: 512, Height: 512}, true},
		{"640", codec.Size{}, false},
		{"0x480", codec.Size{}, false},
		{"-2x4", codec.Size{}, false},
		{"640x480x3", codec.Size{}, false},
	}
	for _, c := range cases {
		got, err := codec.ParseSize(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseSize(%q) = %v, %v; expected %v, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
}

func TestPNGReadsAnyColourModel(t *testing.T) {
	dir := t.TempDir()
	f := codec.NewFrame(4, 2)
	for i := range f.Pix {
		f.Pix[i] = byte(i * 10)
	}
	path := filepath.Join(dir, "frame.png")
	if err := codec.WritePNG(path, f); err != nil {
		t.Fatal(err)
	}

	back := &codec.Frame{}
	if err := codec.ReadPNG(path, back); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.Pix, f.Pix) {
		t.Errorf("BGR round trip changed the pixels: %v, expected %v", back.Pix, f.Pix)
	}

	gray16 := image.NewGray16(image.Rect(0, 0, 2, 1))
	gray16.Pix = []byte{0xff, 0xff, 0x00, 0x10}
	mask := filepath.Join(dir, "mask16.png")
	if err := writePNG(mask, gray16); err != nil {
		t.Fatal(err)
	}
	read, err := codec.ReadGray(mask)
	if err != nil {
		t.Fatal(err)
	}
	if read.Pix[0] != 255 || read.Pix[1] != 0 {
		t.Errorf("16-bit mask read as %v, expected [255 0]", read.Pix)
	}
}

func TestWriterCopiesAudio(t *testing.T) {
	dir := t.TempDir()
	input := filepath.Join(dir, "with-audio.mp4")
	cmd := exec.Command("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=2",
		"-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:v", "libx264", "-c:a", "aac", "-shortest", input)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make a test clip with ffmpeg: %v\n%s", err, out)
	}

	r, err := codec.Open(input, codec.ReaderOptions{KeepAudio: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Audio() == nil {
		t.Fatal("no audio track found in a clip with an AAC stream")
	}

	output := filepath.Join(dir, "copy.mp4")
	w, err := codec.Create(output, codec.WriterOptions{
		EncoderOptions: codec.EncoderOptions{Width: 160, Height: 120, FrameRate: 25},
		Audio:          r.Audio(),
	})
	if err != nil {
		t.Fatal(err)
	}
	f := &codec.Frame{}
	for {
		err := r.Read(f)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	probe, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "stream=codec_type,codec_name,duration",
		"-of", "csv=p=0", output).Output()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("streams of the copy:\n%s", probe)
	if !bytes.Contains(probe, []byte("aac,audio")) {
		t.Errorf("output has no AAC audio stream:\n%s", probe)
	}
	for _, line := range bytes.Split(bytes.TrimSpace(probe), []byte("\n")) {
		fields := bytes.Split(line, []byte(","))
		duration, _ := strconv.ParseFloat(string(fields[len(fields)-1]), 64)
		if math.Abs(duration-2) > 0.1 {
			t.Errorf("stream %s lasts %.3f s, expected 2 s", line, duration)
		}
	}
}

func TestReaderNamesNonVideoMP4(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notes.mp4")
	os.WriteFile(path, []byte("a text file with a video's name\n"), 0o644)
	_, err := codec.Open(path, codec.ReaderOptions{})
	if !errors.Is(err, codec.ErrNotVideo) {
		t.Errorf("text file named .mp4: error %v, expected ErrNotVideo rather than a truncation", err)
	}
}
