package trainer

import (
	"fmt"
	"image"
	"os"
	"sort"

	"github.com/rs/zerolog/log"

	"github.com/medvseg/medvseg/segment"
)

// SeedSource selects the seed masks of a propagation.
type SeedSource struct {
	// Dir is the folder of mask PNGs, named by frame number like the frames.
	Dir string
	// Numbers are the frame numbers to take seeds for. Empty takes every
	// mask in Dir.
	Numbers []int
}

// Seed is a seed mask matched to its frame.
type Seed struct {
	// Frame is the name of the frame file the seed belongs to.
	Frame string `json:"frame"`
	// Number is the frame number in the seed's name.
	Number int `json:"number"`
	// Path is the seed mask file.
	Path string `json:"path"`
	// AmbiguousPixels counts the pixels that were neither 0 nor 255 before
	// binarisation at > 127.
	AmbiguousPixels int `json:"ambiguous_pixels,omitempty"`
	// Resized is set when the mask was resized to its frame's size.
	Resized bool `json:"resized,omitempty"`

	index int         // index of the frame in the clip
	mask  *image.Gray // 0 or 255, at the frame size
}

// LoadSeeds reads the seed masks that src selects and matches them to the
// frames of clip by frame number. Masks are binarised at > 127, with one
// warning per seed that had other values than 0 and 255. A seed whose
// number matches no frame, an empty or full seed, and a seed whose size
// differs from its frame are errors. With resize, a seed of another size
// is resized to its frame with nearest-neighbour interpolation instead.
func LoadSeeds(clip *Clip, src SeedSource, resize bool) ([]Seed, error) {
	files, err := selectSeedFiles(src)
	if err != nil {
		return nil, err
	}

	width, height, err := frameSize(clip.Frames[0].Path)
	if err != nil {
		return nil, err
	}

	seeds := make([]Seed, 0, len(files))
	for _, f := range files {
		seed, err := loadSeed(clip, f, width, height, resize)
		if err != nil {
			return nil, err
		}
		seeds = append(seeds, seed)
	}
	sort.Slice(seeds, func(i, j int) bool { return seeds[i].index < seeds[j].index })
	return seeds, nil
}

// selectSeedFiles lists the masks of src.Dir and keeps those of src.Numbers.
func selectSeedFiles(src SeedSource) ([]segment.MaskFile, error) {
	all, err := segment.ListMasks(src.Dir)
	if err != nil {
		return nil, fmt.Errorf("seed masks: %w", err)
	}
	if len(src.Numbers) == 0 {
		return all, nil
	}

	byNumber := map[int]segment.MaskFile{}
	for _, f := range all {
		byNumber[f.Number] = f
	}
	var files []segment.MaskFile
	seen := map[int]bool{}
	for _, n := range src.Numbers {
		f, ok := byNumber[n]
		if !ok {
			return nil, fmt.Errorf("no seed mask for frame %d in %q (it has masks for frames %d to %d): pick seed frames that have a mask",
				n, src.Dir, all[0].Number, all[len(all)-1].Number)
		}
		if !seen[n] {
			files = append(files, f)
			seen[n] = true
		}
	}
	return files, nil
}

func loadSeed(clip *Clip, f segment.MaskFile, width, height int, resize bool) (Seed, error) {
	index, err := clip.Index(f.Number)
	if err != nil {
		return Seed{}, fmt.Errorf("seed mask %q: %w", f.Path, err)
	}
	mask, ambiguous, err := segment.ReadMask(f.Path)
	if err != nil {
		return Seed{}, err
	}
	seed := Seed{Frame: clip.Frames[index].Name, Number: f.Number, Path: f.Path, AmbiguousPixels: ambiguous, index: index}
	if ambiguous > 0 {
		log.Warn().Str("seed", f.Path).Int("ambiguous_pixels", ambiguous).
			Msg("seed mask is not binary: pixels above 127 are taken as lesion")
	}

	w, h := mask.Rect.Dx(), mask.Rect.Dy()
	if w != width || h != height {
		if !resize {
			return Seed{}, fmt.Errorf("seed mask %q is %dx%d but its frame %q is %dx%d: redraw it at the frame size, or resize seeds with nearest-neighbour interpolation (medvseg propagate --resize)",
				f.Path, w, h, clip.Frames[index].Path, width, height)
		}
		if mask, err = resizeMask(mask, width, height); err != nil {
			return Seed{}, fmt.Errorf("seed mask %q: %w", f.Path, err)
		}
		seed.Resized = true
		log.Warn().Str("seed", f.Path).Str("from", fmt.Sprintf("%dx%d", w, h)).
			Str("to", fmt.Sprintf("%dx%d", width, height)).Msg("seed mask resized to its frame")
	}

	area := countForeground(mask)
	switch area {
	case 0:
		return Seed{}, fmt.Errorf("seed mask %q is all black: it marks no lesion; draw the lesion in white (255) on black (0)", f.Path)
	case width * height:
		return Seed{}, fmt.Errorf("seed mask %q is all white: the lesion cannot fill the whole frame; check that the mask is not inverted (lesion 255, background 0)", f.Path)
	}
	seed.mask = mask
	return seed, nil
}

// frameSize reads the size of a PNG from its header.
func frameSize(path string) (int, int, error) {
	file, err := os.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("read frame %q: %w", path, err)
	}
	defer file.Close()
	config, _, err := image.DecodeConfig(file)
	if err != nil {
		return 0, 0, fmt.Errorf("read frame %q: %w", path, err)
	}
	return config.Width, config.Height, nil
}

// countForeground returns the number of pixels above 127.
func countForeground(mask *image.Gray) int {
	n := 0
	w := mask.Rect.Dx()
	for y := 0; y < mask.Rect.Dy(); y++ {
		for _, v := range mask.Pix[y*mask.Stride : y*mask.Stride+w] {
			if v > 127 {
				n++
			}
		}
	}
	return n
}
