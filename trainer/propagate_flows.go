package trainer

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"image"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unsafe"

	"gocv.io/x/gocv"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/segment"
)

// flowIndexName is the file in a flow folder that records what its flows
// were computed from, so that a later stage reuses them only when they match.
const flowIndexName = "flows.json"

// flowIndex describes a folder of flows between adjacent frames of a clip.
type flowIndex struct {
	Method      string   `json:"method"`
	Scale       float64  `json:"scale"`
	FrameWidth  int      `json:"frame_width"`
	FrameHeight int      `json:"frame_height"`
	Width       int      `json:"width"`
	Height      int      `json:"height"`
	Frames      []string `json:"frames"`
}

// flowStore is a folder of the optical flows between adjacent frames of a
// clip, in both directions, at the flow resolution, one Middlebury .flo file
// each. Flows live on disk rather than in memory because a clip of a few
// thousand 640x480 frames needs several GB of them.
type flowStore struct {
	dir   string
	index flowIndex
}

// flowName returns the file name of the flow from frame a to frame b.
func flowName(a, b string) string {
	trim := func(s string) string { return strings.TrimSuffix(s, filepath.Ext(s)) }
	return trim(a) + "_to_" + trim(b) + ".flo"
}

// flowSize returns the resolution flows are computed at for frames of w x h.
func flowSize(w, h int, scale float64) (int, int) {
	if scale == 0 || scale == 1 {
		return w, h
	}
	return max(1, int(math.Round(float64(w)*scale))), max(1, int(math.Round(float64(h)*scale)))
}

// computeFlows computes the flows between adjacent frames of clip in both
// directions into dir, which must exist. Frames are resized to the flow
// resolution first, so the flows are at that resolution. progress, if not
// nil, is called after each frame pair.
func computeFlows(ctx context.Context, clip *Clip, o segment.FlowOptions, dir string, progress func(done, total int)) (*flowStore, error) {
	scale := o.Scale
	if scale == 0 {
		scale = 1
	}
	if !(scale > 0 && scale <= 1) {
		return nil, fmt.Errorf("invalid flow scale %v: must be in (0, 1], for example 0.5 for half resolution", o.Scale)
	}
	estimator, err := segment.NewFlowEstimator(segment.FlowOptions{Method: o.Method, Scale: 1})
	if err != nil {
		return nil, err
	}
	defer estimator.Close()

	store := &flowStore{dir: dir, index: flowIndex{Method: o.Method, Scale: scale}}
	for _, f := range clip.Frames {
		store.index.Frames = append(store.index.Frames, f.Name)
	}

	var frames [2]*codec.Frame
	var small [2]*codec.Frame
	for i := range frames {
		frames[i], small[i] = &codec.Frame{}, &codec.Frame{}
	}
	flow := &segment.FlowField{}
	defer flow.Close()

	total := len(clip.Frames) - 1
	for i, f := range clip.Frames {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		cur, prev := i%2, (i+1)%2
		if err := codec.ReadPNG(f.Path, frames[cur]); err != nil {
			return nil, err
		}
		if i == 0 {
			store.index.FrameWidth, store.index.FrameHeight = frames[cur].Width, frames[cur].Height
			store.index.Width, store.index.Height = flowSize(frames[cur].Width, frames[cur].Height, scale)
		} else if frames[cur].Width != store.index.FrameWidth || frames[cur].Height != store.index.FrameHeight {
			return nil, fmt.Errorf("frame %q is %dx%d but %q is %dx%d: every frame of a clip must have one size",
				f.Path, frames[cur].Width, frames[cur].Height, clip.Frames[0].Path, store.index.FrameWidth, store.index.FrameHeight)
		}
		if err := resizeFrame(frames[cur], small[cur], store.index.Width, store.index.Height); err != nil {
			return nil, err
		}
		if i == 0 {
			continue
		}

		for _, pair := range [][2]int{{i - 1, i}, {i, i - 1}} {
			from, to := small[prev], small[cur]
			if pair[0] == i {
				from, to = to, from
			}
			if err := estimator.Compute(from, to, flow); err != nil {
				return nil, fmt.Errorf("flow from %q to %q: %w", clip.Frames[pair[0]].Name, clip.Frames[pair[1]].Name, err)
			}
			if err := writeFlo(store.path(pair[0], pair[1]), flow); err != nil {
				return nil, err
			}
		}
		if progress != nil {
			progress(i, total)
		}
	}

	data, err := json.MarshalIndent(store.index, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, flowIndexName), data); err != nil {
		return nil, err
	}
	return store, nil
}

// openFlows returns the flows kept in dir when they were computed with
// method and scale from the frames of clip, and nil otherwise.
func openFlows(dir string, clip *Clip, o segment.FlowOptions) *flowStore {
	data, err := os.ReadFile(filepath.Join(dir, flowIndexName))
	if err != nil {
		return nil
	}
	var index flowIndex
	if json.Unmarshal(data, &index) != nil {
		return nil
	}
	scale := o.Scale
	if scale == 0 {
		scale = 1
	}
	names := make([]string, len(clip.Frames))
	for i, f := range clip.Frames {
		names[i] = f.Name
	}
	if index.Method != o.Method || index.Scale != scale || !slices.Equal(index.Frames, names) {
		return nil
	}
	return &flowStore{dir: dir, index: index}
}

func (s *flowStore) path(from, to int) string {
	return filepath.Join(s.dir, flowName(s.index.Frames[from], s.index.Frames[to]))
}

// load reads the flow from frame index `from` to frame index `to` into dst.
func (s *flowStore) load(from, to int, dst *segment.FlowField) error {
	return readFlo(s.path(from, to), s.index.Width, s.index.Height, dst)
}

// floMagic is the tag that starts a Middlebury .flo file, the float32
// 202021.25, whose little-endian bytes read "PIEH".
const floMagic = 202021.25

// writeFlo writes a flow field in the Middlebury .flo format: the tag, the
// width and height as int32, then dx, dy as float32 per pixel row by row,
// all little-endian.
func writeFlo(path string, flow *segment.FlowField) error {
	header := make([]byte, 12)
	binary.LittleEndian.PutUint32(header[0:], math.Float32bits(floMagic))
	binary.LittleEndian.PutUint32(header[4:], uint32(flow.Width()))
	binary.LittleEndian.PutUint32(header[8:], uint32(flow.Height()))

	file, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write flow %q: %w", path, err)
	}
	_, err = file.Write(header)
	if err == nil {
		_, err = file.Write(float32Bytes(flow.Vectors()))
	}
	if closeErr := file.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return fmt.Errorf("write flow %q: %w", path, err)
	}
	return nil
}

// readFlo reads a Middlebury .flo file of the expected size into dst.
func readFlo(path string, width, height int, dst *segment.FlowField) error {
	file, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read flow %q: %w", path, err)
	}
	defer file.Close()

	header := make([]byte, 12)
	if _, err := io.ReadFull(file, header); err != nil {
		return fmt.Errorf("read flow %q: %w", path, err)
	}
	magic := math.Float32frombits(binary.LittleEndian.Uint32(header[0:]))
	w, h := int(binary.LittleEndian.Uint32(header[4:])), int(binary.LittleEndian.Uint32(header[8:]))
	if magic != floMagic || w != width || h != height {
		return fmt.Errorf("read flow %q: not a %dx%d .flo file; delete the flows folder to recompute it", path, width, height)
	}

	dst.Resize(w, h)
	if _, err := io.ReadFull(file, float32Bytes(dst.Vectors())); err != nil {
		return fmt.Errorf("read flow %q: %w", path, err)
	}
	return nil
}

// float32Bytes returns the memory of v as bytes, in native byte order,
// which is little-endian on the amd64 and arm64 machines medvseg builds for.
func float32Bytes(v []float32) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), len(v)*4)
}

// resizeFrame writes src resized to width x height (area interpolation)
// into dst, or a copy when the size is the same.
func resizeFrame(src, dst *codec.Frame, width, height int) error {
	if src.Width == width && src.Height == height {
		dst.CopyFrom(src)
		return nil
	}
	in, err := gocv.NewMatFromBytes(src.Height, src.Width, gocv.MatTypeCV8UC3, src.Pix)
	if err != nil {
		return fmt.Errorf("resize frame %dx%d: %w", src.Width, src.Height, err)
	}
	defer in.Close()
	out := gocv.NewMat()
	defer out.Close()
	gocv.Resize(in, &out, image.Pt(width, height), 0, 0, gocv.InterpolationArea)
	dst.Resize(width, height)
	copy(dst.Pix, out.ToBytes())
	return nil
}

// resizeMap writes src resized to width x height into dst with the given
// interpolation. dst must not be src.
func resizeMap(src, dst *segment.Map, width, height int, interpolation gocv.InterpolationFlags) error {
	dst.Resize(width, height)
	if src.Width == width && src.Height == height {
		copy(dst.Pix, src.Pix)
		return nil
	}
	in, err := gocv.NewMatFromBytes(src.Height, src.Width, gocv.MatTypeCV32FC1, float32Bytes(src.Pix))
	if err != nil {
		return fmt.Errorf("resize map %dx%d: %w", src.Width, src.Height, err)
	}
	defer in.Close()
	out, err := gocv.NewMatFromBytes(height, width, gocv.MatTypeCV32FC1, float32Bytes(dst.Pix))
	if err != nil {
		return fmt.Errorf("resize map to %dx%d: %w", width, height, err)
	}
	defer out.Close()
	gocv.Resize(in, &out, image.Pt(width, height), 0, 0, interpolation)
	return nil
}

// resizeMask returns mask resized to width x height with nearest-neighbour
// interpolation, so it stays 0 or 255.
func resizeMask(mask *image.Gray, width, height int) (*image.Gray, error) {
	w, h := mask.Rect.Dx(), mask.Rect.Dy()
	out := image.NewGray(image.Rect(0, 0, width, height))
	if w == width && h == height {
		for y := 0; y < h; y++ {
			copy(out.Pix[y*width:(y+1)*width], mask.Pix[y*mask.Stride:y*mask.Stride+w])
		}
		return out, nil
	}
	packed := mask
	if mask.Stride != w || mask.Rect.Min != (image.Point{}) {
		packed = image.NewGray(image.Rect(0, 0, w, h))
		for y := 0; y < h; y++ {
			copy(packed.Pix[y*w:(y+1)*w], mask.Pix[(y)*mask.Stride:(y)*mask.Stride+w])
		}
	}
	in, err := gocv.NewMatFromBytes(h, w, gocv.MatTypeCV8UC1, packed.Pix)
	if err != nil {
		return nil, fmt.Errorf("resize mask %dx%d: %w", w, h, err)
	}
	defer in.Close()
	dst, err := gocv.NewMatFromBytes(height, width, gocv.MatTypeCV8UC1, out.Pix)
	if err != nil {
		return nil, fmt.Errorf("resize mask to %dx%d: %w", width, height, err)
	}
	defer dst.Close()
	gocv.Resize(in, &dst, image.Pt(width, height), 0, 0, gocv.InterpolationNearestNeighbor)
	return out, nil
}

// maskToMap returns mask (0 or 255) as a map on [0,1] of width x height,
// resized with area interpolation so that boundary pixels get fractions.
func maskToMap(mask *image.Gray, width, height int) (*segment.Map, error) {
	w, h := mask.Rect.Dx(), mask.Rect.Dy()
	full := segment.NewMap(w, h)
	for y := 0; y < h; y++ {
		row := mask.Pix[(y)*mask.Stride:]
		for x := 0; x < w; x++ {
			if row[x] > 127 {
				full.Pix[y*w+x] = 1
			}
		}
	}
	if w == width && h == height {
		return full, nil
	}
	out := &segment.Map{}
	if err := resizeMap(full, out, width, height, gocv.InterpolationArea); err != nil {
		return nil, err
	}
	return out, nil
}
