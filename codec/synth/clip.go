package synth

import (
	"fmt"
	"image"
	"os"
	"path/filepath"
	"time"

	"github.com/medvseg/medvseg/codec"
)

// WriteClip generates the clip into dir: clip.mp4 (H.264), frames/0001.png
// ... and masks/0001.png ... (0 background, 255 lesion). Each output appears
// under its final name only when complete. progress, when not nil, is called
// after every frame.
func WriteClip(dir string, o Options, progress func()) error {
	scene, err := NewScene(o)
	if err != nil {
		return err
	}

	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create output folder %q: %w; choose a folder you can write to", dir, err)
	}

	video, err := codec.Create(filepath.Join(dir, "clip.mp4"), codec.WriterOptions{
		EncoderOptions: codec.EncoderOptions{Width: o.Width, Height: o.Height, FrameRate: o.FPS, CRF: 18},
	})
	if err != nil {
		return err
	}
	defer video.Abort()

	frames, err := codec.NewSequenceWriter(filepath.Join(dir, "frames"))
	if err != nil {
		return err
	}
	defer frames.Abort()

	masks, err := codec.NewSequenceWriter(filepath.Join(dir, "masks"))
	if err != nil {
		return err
	}
	defer masks.Abort()

	frame := codec.NewFrame(o.Width, o.Height)
	mask := image.NewGray(image.Rect(0, 0, o.Width, o.Height))
	for i := 0; i < o.Frames; i++ {
		scene.Render(i, frame, mask)

		if err := video.Write(frame); err != nil {
			return err
		}
		if err := frames.Write(frame); err != nil {
			return err
		}
		if err := masks.WriteGray(i+1, mask); err != nil {
			return err
		}
		if progress != nil {
			progress()
		}
	}

	for _, commit := range []func() error{video.Close, frames.Commit, masks.Commit} {
		if err := commit(); err != nil {
			return err
		}
	}
	return nil
}

func frameTime(index int, fps float64) time.Duration {
	return time.Duration(float64(index) / fps * float64(time.Second))
}
