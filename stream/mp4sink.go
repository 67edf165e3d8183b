package stream

import (
	"github.com/medvseg/medvseg/codec"
)

// MP4Sink encodes the overlay frames to an H.264 mp4 file.
type MP4Sink struct {
	writer *codec.Writer
}

// NewMP4Sink creates the mp4 at path; it appears under that name only when
// Close succeeds.
func NewMP4Sink(path string, options codec.WriterOptions) (*MP4Sink, error) {
	w, err := codec.Create(path, options)
	if err != nil {
		return nil, err
	}
	return &MP4Sink{writer: w}, nil
}

// Write encodes the frame with its overlay.
func (s *MP4Sink) Write(r *Result) error {
	return s.writer.Write(r.Frame)
}

// Close finishes the mp4, or removes it when cause is not nil.
func (s *MP4Sink) Close(cause error) error {
	if cause != nil {
		s.writer.Abort()
		return nil
	}
	return s.writer.Close()
}
