// Package codec reads and writes video and image sequences through FFmpeg
// (go-astiav) and hands frames to the rest of medvseg as packed BGR bytes.
package codec

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Frame is one picture in packed BGR24: 3 bytes a pixel, rows without padding.
// The caller that allocated the frame owns the slice. Reader.Read decodes
// into it without reallocating when its capacity is large enough.
type Frame struct {
	Width  int
	Height int
	Pix    []byte

	// Index is the 0-based display index of the frame in its source.
	Index int
	// PTS is the presentation time relative to the start of the source.
	PTS time.Duration
}

// NewFrame allocates a black frame of the given size.
func NewFrame(width, height int) *Frame {
	return &Frame{Width: width, Height: height, Pix: make([]byte, width*height*3)}
}

// Resize sets the frame size, reusing the pixel buffer when it is large enough.
func (f *Frame) Resize(width, height int) {
	n := width * height * 3
	if cap(f.Pix) < n {
		f.Pix = make([]byte, n)
	}

	f.Pix = f.Pix[:n]
	f.Width = width
	f.Height = height
}

// CopyFrom makes f a deep copy of src, reusing f's buffer when possible.
func (f *Frame) CopyFrom(src *Frame) {
	f.Resize(src.Width, src.Height)
	copy(f.Pix, src.Pix)
	f.Index = src.Index
	f.PTS = src.PTS
}

func (f *Frame) String() string {
	return fmt.Sprintf("frame %d (%dx%d, pts %v)", f.Index, f.Width, f.Height, f.PTS)
}

// Size is a width and height in pixels, written WxH as on the command line.
type Size struct {
	Width  int
	Height int
}

// ParseSize parses "WxH", for example "640x480".
func ParseSize(s string) (Size, error) {
	width, height, found := strings.Cut(strings.ToLower(s), "x")
	w, errW := strconv.Atoi(width)
	h, errH := strconv.Atoi(height)
	if !found || errW != nil || errH != nil {
		return Size{}, fmt.Errorf("invalid size %q: expected WIDTHxHEIGHT, for example 640x480", s)
	}
	if w <= 0 || h <= 0 {
		return Size{}, fmt.Errorf("invalid size %q: width and height must be positive", s)
	}
	return Size{Width: w, Height: h}, nil
}

func (s Size) String() string { return fmt.Sprintf("%dx%d", s.Width, s.Height) }

// IsZero reports whether no size was set.
func (s Size) IsZero() bool { return s.Width == 0 && s.Height == 0 }
