package codec_test

import (
	"image"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"github.com/medvseg/medvseg/codec"
)

func writePNG(path string, img image.Image) error {
	file, err := os.Create(path)
	if err != nil {
		return err
	}
	defer file.Close()
	return png.Encode(file, img)
}

func TestSequenceWriterReplacesOnCommitOnly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "frames")
	f := codec.NewFrame(8, 8)

	first, err := codec.NewSequenceWriter(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		f.Index = i
		if err := first.Write(f); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("folder %s exists before Commit", dir)
	}
	if err := first.Commit(); err != nil {
		t.Fatal(err)
	}

	entries, err := codec.ListSequence(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 || filepath.Base(entries[0].Path) != "0001.png" || entries[2].Number != 3 {
		t.Fatalf("committed sequence %v, expected 0001.png to 0003.png", entries)
	}

	// A second run that fails must leave the first run's frames in place.
	second, err := codec.NewSequenceWriter(dir)
	if err != nil {
		t.Fatal(err)
	}
	f.Index = 0
	if err := second.Write(f); err != nil {
		t.Fatal(err)
	}
	second.Abort()

	entries, _ = codec.ListSequence(dir)
	if len(entries) != 3 {
		t.Errorf("after an aborted run: %d frames, expected the earlier 3", len(entries))
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), ".frames*"))
	if len(leftovers) != 0 {
		t.Errorf("aborted run left staging folders %v", leftovers)
	}
}

func TestWriterBadOutput(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "plain-file")
	os.WriteFile(file, []byte("x"), 0o644)

	options := codec.WriterOptions{EncoderOptions: codec.EncoderOptions{Width: 64, Height: 64, FrameRate: 25}}
	for _, path := range []string{
		filepath.Join(dir, "missing-folder", "out.mp4"),
		filepath.Join(file, "out.mp4"),
	} {
		if _, err := codec.Create(path, options); err == nil {
			t.Errorf("Create(%q) succeeded, expected an error about the folder", path)
		}
	}

	odd := options
	odd.Width = 63
	if _, err := codec.Create(filepath.Join(dir, "odd.mp4"), odd); err == nil {
		t.Error("Create with width 63 succeeded, expected an error: 4:2:0 needs even sizes")
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".*")); len(leftovers) != 0 {
		t.Errorf("failed Create left temporary files %v", leftovers)
	}
}

func TestWriterLeavesNoPartialFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.mp4")
	os.WriteFile(path, []byte("earlier output"), 0o644)

	w, err := codec.Create(path, codec.WriterOptions{EncoderOptions: codec.EncoderOptions{Width: 64, Height: 64, FrameRate: 25}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(codec.NewFrame(64, 64)); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(codec.NewFrame(32, 32)); err == nil {
		t.Error("writing a 32x32 frame to a 64x64 writer succeeded, expected an error")
	}
	w.Abort()

	data, _ := os.ReadFile(path)
	if string(data) != "earlier output" {
		t.Errorf("aborted writer changed %s", path)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".*")); len(leftovers) != 0 {
		t.Errorf("aborted writer left %v", leftovers)
	}

	empty, err := codec.Create(filepath.Join(dir, "empty.mp4"), codec.WriterOptions{EncoderOptions: codec.EncoderOptions{Width: 64, Height: 64, FrameRate: 25}})
	if err != nil {
		t.Fatal(err)
	}
	if err := empty.Close(); err == nil {
		t.Error("closing a writer with no frame succeeded, expected an error")
	}
	if _, err := os.Stat(filepath.Join(dir, "empty.mp4")); !os.IsNotExist(err) {
		t.Error("a writer with no frame left empty.mp4")
	}
}

func TestSequenceWriterProtectsForeignFolders(t *testing.T) {
	parent := t.TempDir()
	run := filepath.Join(parent, "run")
	os.MkdirAll(filepath.Join(run, "checkpoints"), 0o755)
	os.WriteFile(filepath.Join(run, "model.onnx"), []byte("model"), 0o644)

	seeds := filepath.Join(parent, "seeds")
	os.MkdirAll(seeds, 0o755)
	os.WriteFile(filepath.Join(seeds, "frame_0030.png"), []byte("seed"), 0o644)

	file := filepath.Join(parent, "file")
	os.WriteFile(file, []byte("x"), 0o644)

	for _, dir := range []string{run, seeds, file} {
		if _, err := codec.NewSequenceWriter(dir); err == nil {
			t.Errorf("NewSequenceWriter(%q) accepted a folder it would delete", dir)
		}
	}
	if data, _ := os.ReadFile(filepath.Join(seeds, "frame_0030.png")); string(data) != "seed" {
		t.Error("the seed mask changed")
	}
}

func TestOutputsAreReadableByOthers(t *testing.T) {
	dir := t.TempDir()
	w, err := codec.NewSequenceWriter(filepath.Join(dir, "frames"))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(codec.NewFrame(4, 4)); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}

	video := filepath.Join(dir, "out.mp4")
	mp4, err := codec.Create(video, codec.WriterOptions{EncoderOptions: codec.EncoderOptions{Width: 64, Height: 64, FrameRate: 25}})
	if err != nil {
		t.Fatal(err)
	}
	mp4.Write(codec.NewFrame(64, 64))
	if err := mp4.Close(); err != nil {
		t.Fatal(err)
	}

	for _, path := range []string{filepath.Join(dir, "frames"), filepath.Join(dir, "frames", "0001.png"), video} {
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm()&0o044 != 0o044 {
			t.Errorf("%s has mode %v, expected group and others to read it", path, info.Mode().Perm())
		}
	}
}
