package stream

import (
	"fmt"
	"image"

	"github.com/rs/zerolog/log"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/segment"
)

// Segmenter produces the lesion probability map of a keyframe.
type Segmenter interface {
	// Segment writes the probability map of frame into prob, resizing it
	// to the frame size. It returns false when it has no result for this
	// frame, and the loop propagates the previous mask instead.
	Segment(frame *codec.Frame, prob *segment.Map) (bool, error)
}

// ModelSegmenter runs an ONNX model on every frame it is given.
type ModelSegmenter struct {
	model  *segment.Model
	frames []*codec.Frame
	probs  []*segment.Map
}

// NewModelSegmenter wraps a loaded model.
func NewModelSegmenter(model *segment.Model) *ModelSegmenter {
	return &ModelSegmenter{model: model, frames: make([]*codec.Frame, 1), probs: make([]*segment.Map, 1)}
}

// Segment runs the model on one frame.
func (s *ModelSegmenter) Segment(frame *codec.Frame, prob *segment.Map) (bool, error) {
	s.frames[0], s.probs[0] = frame, prob
	if err := s.model.Predict(s.frames, s.probs, nil); err != nil {
		return false, fmt.Errorf("segment frame %d: %w", frame.Index+1, err)
	}
	return true, nil
}

// SeedSegmenter returns hand-drawn seed masks on the frames they belong to,
// so the loop propagates them through the video: a preview of the seeds
// before training.
type SeedSegmenter struct {
	seeds map[int]*image.Gray // by 1-based frame number
	used  int
}

// NewSeedSegmenter reads the seed masks of dir, matched to frames by the
// number in their names. frameCount, when known (> 0), rejects seeds past
// the end of the video.
func NewSeedSegmenter(dir string, frameCount int) (*SeedSegmenter, error) {
	files, err := segment.ListMasks(dir)
	if err != nil {
		return nil, err
	}

	s := &SeedSegmenter{seeds: map[int]*image.Gray{}}
	for _, f := range files {
		if frameCount > 0 && (f.Number < 1 || f.Number > frameCount) {
			return nil, fmt.Errorf("seed mask %q is for frame %d, but the video has frames 1 to %d: "+
				"name seeds by the 1-based number of their frame", f.Path, f.Number, frameCount)
		}

		mask, ambiguous, err := segment.ReadMask(f.Path)
		if err != nil {
			return nil, err
		}
		if ambiguous > 0 {
			log.Warn().Str("seed", f.Path).Int("ambiguous_pixels", ambiguous).
				Msg("seed mask is not purely 0/255; binarised at 127")
		}
		if err := checkSeedCoverage(f.Path, mask); err != nil {
			return nil, err
		}
		s.seeds[f.Number] = mask
	}

	return s, nil
}

// checkSeedCoverage rejects a seed that marks no pixel or every pixel,
// which is almost always the wrong file or an inverted mask.
func checkSeedCoverage(path string, mask *image.Gray) error {
	area := 0
	for _, v := range mask.Pix {
		if v != 0 {
			area++
		}
	}
	switch area {
	case 0:
		return fmt.Errorf("seed mask %q is all black: draw the lesion in white (255) on black", path)
	case len(mask.Pix):
		return fmt.Errorf("seed mask %q is all white: draw the lesion in white (255) on black, "+
			"not the other way round", path)
	}
	return nil
}

// Segment returns the seed of this frame as a 0/1 map, or false when the frame has none.
func (s *SeedSegmenter) Segment(frame *codec.Frame, prob *segment.Map) (bool, error) {
	seed, ok := s.seeds[frame.Index+1]
	if !ok {
		return false, nil
	}

	w, h := seed.Rect.Dx(), seed.Rect.Dy()
	if w != frame.Width || h != frame.Height {
		return false, fmt.Errorf("seed mask for frame %d is %dx%d but the frame is %dx%d: "+
			"draw the seed on the frame at its own size", frame.Index+1, w, h, frame.Width, frame.Height)
	}

	prob.Resize(w, h)
	for i, v := range seed.Pix {
		prob.Pix[i] = float32(v) / 255
	}
	s.used++
	return true, nil
}

// Used returns the number of seeds that matched a frame so far.
func (s *SeedSegmenter) Used() int { return s.used }
