package trainer

import (
	"errors"
	"fmt"
	"image"
	"math"
	"os"
	"path/filepath"
	"sort"

	"github.com/rs/zerolog/log"
	"gocv.io/x/gocv"

	"github.com/medvseg/medvseg/codec"
)

// trainSample is one frame and its mask, resized to the square training input:
// BGR bytes and a mask of 0 or 255.
type trainSample struct {
	clip  string
	frame string // path of the frame file
	bgr   []byte
	mask  []byte
}

// trainingClips returns the folders that contain frames/ and masks/: dir
// itself when it has a frames folder, else its subfolders that have one.
func trainingClips(dir string) ([]string, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("training data %q: %w", dir, err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("training data %q is not a folder: pass DIR with DIR/frames and DIR/masks", dir)
	}
	if isFolder(filepath.Join(dir, "frames")) {
		return []string{dir}, nil
	}

	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("training data %q: %w", dir, err)
	}
	var clips []string
	for _, e := range entries {
		if isFolder(filepath.Join(dir, e.Name(), "frames")) {
			clips = append(clips, filepath.Join(dir, e.Name()))
		}
	}
	if len(clips) == 0 {
		return nil, fmt.Errorf("no training data in %q: expected %s and %s, or ROOT/<clip>/frames and ROOT/<clip>/masks",
			dir, filepath.Join(dir, "frames", "NAME.png"), filepath.Join(dir, "masks", "NAME.png"))
	}
	sort.Strings(clips)
	return clips, nil
}

// loadTrainingClip reads the frames of a clip folder and their masks, paired by
// file name, resized to size x size.
func loadTrainingClip(dir string, size int) ([]trainSample, error) {
	frames, err := codec.ListSequence(filepath.Join(dir, "frames"))
	if err != nil {
		return nil, err
	}
	if len(frames) == 0 {
		return nil, fmt.Errorf("no frames in %q: add the frames as PNG files, each with a mask of the same name in %q",
			filepath.Join(dir, "frames"), filepath.Join(dir, "masks"))
	}
	warnUnpairedMasks(dir, frames)

	samples := make([]trainSample, 0, len(frames))
	frame := &codec.Frame{}
	for _, entry := range frames {
		s, err := loadTrainingSample(dir, entry.Path, frame, size)
		if err != nil {
			return nil, err
		}
		samples = append(samples, s)
	}
	return samples, nil
}

func loadTrainingSample(dir, framePath string, frame *codec.Frame, size int) (trainSample, error) {
	maskPath := filepath.Join(dir, "masks", filepath.Base(framePath))
	if _, err := os.Stat(maskPath); errors.Is(err, os.ErrNotExist) {
		return trainSample{}, fmt.Errorf("frame %q has no mask: expected %q (0 or 255, same name and size); add it or remove the frame",
			framePath, maskPath)
	}

	if err := codec.ReadPNG(framePath, frame); err != nil {
		return trainSample{}, err
	}
	mask, err := codec.ReadGray(maskPath)
	if err != nil {
		return trainSample{}, err
	}
	if mask.Rect.Dx() != frame.Width || mask.Rect.Dy() != frame.Height {
		return trainSample{}, fmt.Errorf("mask %q is %dx%d but its frame %q is %dx%d: masks must have their frame's size",
			maskPath, mask.Rect.Dx(), mask.Rect.Dy(), framePath, frame.Width, frame.Height)
	}

	s := trainSample{clip: dir, frame: framePath}
	if s.bgr, err = resizeBytes(frame.Pix, frame.Width, frame.Height, gocv.MatTypeCV8UC3, size); err != nil {
		return trainSample{}, fmt.Errorf("resize frame %q: %w", framePath, err)
	}
	if s.mask, err = resizeBytes(packedGray(mask), frame.Width, frame.Height, gocv.MatTypeCV8UC1, size); err != nil {
		return trainSample{}, fmt.Errorf("resize mask %q: %w", maskPath, err)
	}
	for i, v := range s.mask {
		s.mask[i] = binaryMask(v)
	}
	return s, nil
}

// binaryMask thresholds a grey level at half range, so masks saved with
// anti-aliased edges or resampled still train as 0/255.
func binaryMask(v byte) byte {
	if v >= 128 {
		return 255
	}
	return 0
}

func packedGray(img *image.Gray) []byte {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	if img.Stride == w {
		return img.Pix[:w*h]
	}
	out := make([]byte, 0, w*h)
	for y := range h {
		out = append(out, img.Pix[y*img.Stride:y*img.Stride+w]...)
	}
	return out
}

// resizeBytes resizes a packed 8-bit image to size x size with pixel-area
// averaging, which avoids aliasing when shrinking.
func resizeBytes(pix []byte, width, height int, matType gocv.MatType, size int) ([]byte, error) {
	src, err := gocv.NewMatFromBytes(height, width, matType, pix)
	if err != nil {
		return nil, err
	}
	defer src.Close()

	dst := gocv.NewMat()
	defer dst.Close()
	gocv.Resize(src, &dst, image.Pt(size, size), 0, 0, gocv.InterpolationArea)
	return dst.ToBytes(), nil
}

// warnUnpairedMasks logs, once per clip, masks whose frame is missing.
func warnUnpairedMasks(dir string, frames []codec.SequenceEntry) {
	masks, err := codec.ListSequence(filepath.Join(dir, "masks"))
	if err != nil {
		return
	}

	names := map[string]bool{}
	for _, f := range frames {
		names[filepath.Base(f.Path)] = true
	}
	unpaired := 0
	first := ""
	for _, m := range masks {
		if !names[filepath.Base(m.Path)] {
			if unpaired == 0 {
				first = m.Path
			}
			unpaired++
		}
	}
	if unpaired > 0 {
		log.Warn().Str("clip", dir).Int("masks", unpaired).Str("first", first).
			Msg("masks without a frame of the same name are not used")
	}
}

// splitValidation holds out the last ceil(fraction*n) frames of each clip,
// in name order, for validation. A contiguous block at the end keeps the
// near-duplicate neighbours of validation frames out of training more than
// a random pick would. Every clip keeps at least one training frame.
func splitValidation(clip []trainSample, fraction float64) (train, validation []trainSample) {
	if fraction <= 0 || len(clip) < 2 {
		return clip, nil
	}

	heldOut := int(math.Ceil(float64(len(clip)) * fraction))
	heldOut = min(max(heldOut, 1), len(clip)-1)
	return clip[:len(clip)-heldOut], clip[len(clip)-heldOut:]
}
