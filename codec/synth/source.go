package synth

import (
	"fmt"
	"io"

	"github.com/medvseg/medvseg/codec"
)

// Source delivers the frames of a Scene in order, as a video reader would,
// and returns io.EOF after the last frame of the clip. It keeps every frame
// it renders, Frames x Width x Height x 3 bytes in all, because rendering
// costs more than a live loop can spend per frame: a 320x240 frame took
// about 25 ms on 2 cores (a 640x480 one about 100 ms), while a frame at 25 fps
// lasts 40 ms. Rewind restarts the clip from those frames. A Source is not
// safe for concurrent use.
type Source struct {
	scene *Scene
	cache []*codec.Frame
	next  int
}

// NewSource returns a Source at the first frame of scene.
func NewSource(scene *Scene) *Source {
	return &Source{scene: scene, cache: make([]*codec.Frame, scene.options.Frames)}
}

// Rewind makes the next Read return the first frame again.
func (s *Source) Rewind() {
	s.next = 0
}

// Read renders or recalls the next frame into f.
func (s *Source) Read(f *codec.Frame) error {
	if s.next >= s.scene.options.Frames {
		return io.EOF
	}

	if s.cache[s.next] == nil {
		rendered := codec.NewFrame(s.scene.options.Width, s.scene.options.Height)
		s.scene.Render(s.next, rendered, nil)
		s.cache[s.next] = rendered
	}

	f.CopyFrom(s.cache[s.next])
	s.next++
	return nil
}

// Info describes the clip as a codec.Reader would describe a file of it.
func (s *Source) Info() codec.Info {
	o := s.scene.options
	return codec.Info{
		URL:        fmt.Sprintf("synth:%dx%d@%g,seed=%d", o.Width, o.Height, o.FPS, o.RandomSeed),
		Codec:      "rawvideo",
		Width:      o.Width,
		Height:     o.Height,
		FrameRate:  o.FPS,
		Duration:   frameTime(o.Frames, o.FPS),
		FrameCount: o.Frames,
	}
}
