package segment

import (
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/medvseg/medvseg/codec"
)

// MaskFile is a mask PNG with the frame number taken from its name.
type MaskFile struct {
	Path   string
	Number int
}

// ListMasks returns the PNG masks of dir with their frame numbers, sorted by
// number. A name without a number, or two files with one number ("7.png"
// and "0007.png"), is an error naming the files.
func ListMasks(dir string) ([]MaskFile, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list masks in %q: %w", dir, err)
	}

	var out []MaskFile
	seen := map[int]string{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || !strings.EqualFold(filepath.Ext(name), ".png") {
			continue
		}

		number, ok := codec.FrameNumber(name)
		if !ok {
			return nil, fmt.Errorf("mask %q has no frame number in its name: name it like 0007.png", filepath.Join(dir, name))
		}
		if other, dup := seen[number]; dup {
			return nil, fmt.Errorf("masks %q and %q both name frame %d: keep one", other, name, number)
		}
		seen[number] = name
		out = append(out, MaskFile{Path: filepath.Join(dir, name), Number: number})
	}

	if len(out) == 0 {
		return nil, fmt.Errorf("no PNG mask in %q: masks are PNGs named by frame number, like 0007.png", dir)
	}

	sort.Slice(out, func(i, j int) bool { return out[i].Number < out[j].Number })
	return out, nil
}

// ReadMask reads a mask PNG of any colour model and binarises it: a pixel
// is foreground (255) when its brightest channel is above 127 on an 8-bit
// scale, so a white, red or palette-coloured lesion all count. It returns the
// number of ambiguous pixels, neither 0 nor full intensity, so callers can
// warn about soft or anti-aliased masks.
func ReadMask(path string) (mask *image.Gray, ambiguous int, err error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("read mask %q: %w", path, err)
	}
	defer file.Close()

	img, err := png.Decode(file)
	if err != nil {
		return nil, 0, fmt.Errorf("read mask %q: %w; masks must be PNG files", path, err)
	}

	bounds := img.Bounds()
	mask = image.NewGray(image.Rect(0, 0, bounds.Dx(), bounds.Dy()))
	for y := 0; y < bounds.Dy(); y++ {
		for x := 0; x < bounds.Dx(); x++ {
			r, g, b, _ := img.At(bounds.Min.X+x, bounds.Min.Y+y).RGBA()
			level := max(r, g, b) >> 8
			if level != 0 && level != 255 {
				ambiguous++
			}
			if level > 127 {
				mask.Pix[y*mask.Stride+x] = 255
			}
		}
	}

	return mask, ambiguous, nil
}
