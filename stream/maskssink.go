package stream

import (
	"github.com/medvseg/medvseg/codec"
)

// MasksSink writes every binary mask as a PNG (0 or 255) named by its
// 1-based frame number: DIR/0001.png, DIR/0002.png, ...
type MasksSink struct {
	writer *codec.SequenceWriter
}

// NewMasksSink prepares dir; it is replaced only when Close succeeds.
func NewMasksSink(dir string) (*MasksSink, error) {
	w, err := codec.NewSequenceWriter(dir)
	if err != nil {
		return nil, err
	}
	return &MasksSink{writer: w}, nil
}

// Write stores the frame's mask.
func (s *MasksSink) Write(r *Result) error {
	return s.writer.WriteGray(r.Frame.Index+1, r.Mask)
}

// Close moves the masks into place, or discards them when cause is not nil.
func (s *MasksSink) Close(cause error) error {
	if cause != nil {
		s.writer.Abort()
		return nil
	}
	return s.writer.Commit()
}
