package segment

import (
	"fmt"
	"image"

	"gocv.io/x/gocv"

	"github.com/medvseg/medvseg/codec"
)

// Map is a single-channel float32 image, row-major without padding: a
// probability map on [0,1] or a map of logits.
type Map struct {
	Width  int
	Height int
	Pix    []float32
}

// NewMap allocates a zero map.
func NewMap(width, height int) *Map {
	return &Map{Width: width, Height: height, Pix: make([]float32, width*height)}
}

// Resize sets the map size, reusing the buffer when it is large enough.
func (m *Map) Resize(width, height int) {
	if cap(m.Pix) < width*height {
		m.Pix = make([]float32, width*height)
	}
	m.Pix = m.Pix[:width*height]
	m.Width, m.Height = width, height
}

// matView returns a Mat of type CV_32FC1 that shares the map's memory. The
// Mat must be closed and must not outlive the map.
func (m *Map) matView() (gocv.Mat, error) {
	if len(m.Pix) == 0 {
		return gocv.Mat{}, fmt.Errorf("empty map %dx%d", m.Width, m.Height)
	}
	return gocv.NewMatFromBytes(m.Height, m.Width, gocv.MatTypeCV32FC1, float32Bytes(m.Pix))
}

// frameView returns a Mat of type CV_8UC3 (BGR) that shares the frame's
// memory. The Mat must be closed and must not outlive the frame.
func frameView(f *codec.Frame) (gocv.Mat, error) {
	if f.Width <= 0 || f.Height <= 0 || len(f.Pix) < f.Width*f.Height*3 {
		return gocv.Mat{}, fmt.Errorf("empty or short frame %dx%d (%d bytes)", f.Width, f.Height, len(f.Pix))
	}
	return gocv.NewMatFromBytes(f.Height, f.Width, gocv.MatTypeCV8UC3, f.Pix[:f.Width*f.Height*3])
}

// grayView returns a Mat of type CV_8UC1 that shares the image's memory.
// Images with a stride wider than their width are not supported.
func grayView(img *image.Gray) (gocv.Mat, error) {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	if w <= 0 || h <= 0 {
		return gocv.Mat{}, fmt.Errorf("empty mask %dx%d", w, h)
	}
	if img.Stride != w || img.Rect.Min != (image.Point{}) {
		return gocv.Mat{}, fmt.Errorf("mask %dx%d has stride %d: expected a packed image at the origin", w, h, img.Stride)
	}
	return gocv.NewMatFromBytes(h, w, gocv.MatTypeCV8UC1, img.Pix[:w*h])
}

// Threshold writes into dst (resized when needed) 255 where the map is above
// threshold and 0 elsewhere, and returns the number of foreground pixels.
func (m *Map) Threshold(threshold float64, dst *image.Gray) int {
	fitGray(dst, m.Width, m.Height)

	t := float32(threshold)
	area := 0
	for i, v := range m.Pix {
		if v > t {
			dst.Pix[i] = 255
			area++
		} else {
			dst.Pix[i] = 0
		}
	}
	return area
}

// CopyFrom makes m a copy of src, reusing m's buffer when possible.
func (m *Map) CopyFrom(src *Map) {
	m.Resize(src.Width, src.Height)
	copy(m.Pix, src.Pix)
}
