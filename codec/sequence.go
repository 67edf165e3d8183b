package codec

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/google/renameio/v2"
)

// FrameName returns the file name of the frame with the given 1-based
// display number: "0001.png", zero-padded to at least 4 digits as ffmpeg's
// %04d pattern writes it.
func FrameName(number int) string {
	return fmt.Sprintf("%04d.png", number)
}

var trailingDigits = regexp.MustCompile(`(\d+)\D*$`)

// FrameNumber returns the number in a frame or mask file name: the last run
// of digits before the extension, so "7.png", "0007.png" and
// "frame_0007.png" all give 7.
func FrameNumber(name string) (int, bool) {
	base := strings.TrimSuffix(filepath.Base(name), filepath.Ext(name))
	match := trailingDigits.FindStringSubmatch(base)
	if match == nil {
		return 0, false
	}

	n, err := strconv.Atoi(match[1])
	if err != nil {
		return 0, false
	}
	return n, true
}

// SequenceEntry is one PNG file of an image sequence.
type SequenceEntry struct {
	Path string
	// Number is the frame number parsed from the file name, or 0 when the
	// name holds no digits.
	Number int
}

// ListSequence returns the PNG files of a folder sorted by name, which
// defines their order.
func ListSequence(dir string) ([]SequenceEntry, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list PNG sequence %q: %w", dir, err)
	}

	var out []SequenceEntry
	for _, e := range entries {
		if e.IsDir() || !strings.EqualFold(filepath.Ext(e.Name()), ".png") || strings.HasPrefix(e.Name(), ".") {
			continue
		}

		number, _ := FrameNumber(e.Name())
		out = append(out, SequenceEntry{Path: filepath.Join(dir, e.Name()), Number: number})
	}

	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// WritePNG writes a BGR frame as an 8-bit RGB PNG.
func WritePNG(path string, f *Frame) error {
	img := image.NewNRGBA(image.Rect(0, 0, f.Width, f.Height))
	for i, j := 0, 0; i < len(f.Pix); i, j = i+3, j+4 {
		img.Pix[j] = f.Pix[i+2]
		img.Pix[j+1] = f.Pix[i+1]
		img.Pix[j+2] = f.Pix[i]
		img.Pix[j+3] = 0xff
	}

	return writeImage(path, img)
}

// writeImage encodes img to path through a temporary file, so a reader never
// sees a half-written PNG. The file gets mode 0644 less the umask.
func writeImage(path string, img image.Image) error {
	file, err := renameio.NewPendingFile(path, renameio.WithPermissions(0o644))
	if err != nil {
		return fmt.Errorf("write PNG %q: %w", path, err)
	}
	defer file.Cleanup()

	encoder := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := encoder.Encode(file, img); err != nil {
		return fmt.Errorf("write PNG %q: %w", path, err)
	}
	if err := file.CloseAtomicallyReplace(); err != nil {
		return fmt.Errorf("write PNG %q: %w", path, err)
	}
	return nil
}

// ReadPNG decodes a PNG of any colour model (grey, palette, RGB, RGBA, 8 or
// 16 bits) into a BGR frame, resizing f when needed.
func ReadPNG(path string, f *Frame) error {
	img, err := decodePNG(path)
	if err != nil {
		return err
	}

	bounds := img.Bounds()
	f.Resize(bounds.Dx(), bounds.Dy())

	rgba, ok := img.(*image.NRGBA)
	if !ok || rgba.Rect.Min != (image.Point{}) {
		rgba = image.NewNRGBA(image.Rect(0, 0, bounds.Dx(), bounds.Dy()))
		draw.Draw(rgba, rgba.Rect, img, bounds.Min, draw.Src)
	}

	for i, j := 0, 0; i < len(f.Pix); i, j = i+3, j+4 {
		f.Pix[i] = rgba.Pix[j+2]
		f.Pix[i+1] = rgba.Pix[j+1]
		f.Pix[i+2] = rgba.Pix[j]
	}

	return nil
}

func decodePNG(path string) (image.Image, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read PNG %q: %w", path, err)
	}
	defer file.Close()

	img, err := png.Decode(file)
	if err != nil {
		return nil, fmt.Errorf("read PNG %q: %w; the file is not a valid PNG", path, err)
	}
	return img, nil
}

// WriteGray writes an 8-bit single-channel PNG, the format of masks.
func WriteGray(path string, img *image.Gray) error {
	return writeImage(path, img)
}

// ReadGray decodes a PNG of any colour model into 8-bit grey levels: the
// luminance of colour images, the high byte of 16-bit ones.
func ReadGray(path string) (*image.Gray, error) {
	img, err := decodePNG(path)
	if err != nil {
		return nil, err
	}

	if gray, ok := img.(*image.Gray); ok && gray.Rect.Min == (image.Point{}) {
		return gray, nil
	}

	bounds := img.Bounds()
	gray := image.NewGray(image.Rect(0, 0, bounds.Dx(), bounds.Dy()))
	for y := 0; y < bounds.Dy(); y++ {
		for x := 0; x < bounds.Dx(); x++ {
			gray.SetGray(x, y, color.GrayModel.Convert(img.At(bounds.Min.X+x, bounds.Min.Y+y)).(color.Gray))
		}
	}

	return gray, nil
}

// SequenceWriter writes numbered PNG frames into a folder. Frames go to a
// hidden staging folder first; Commit moves it to its final name, replacing
// an earlier folder of that name, so a failed run leaves earlier outputs intact.
type SequenceWriter struct {
	dir     string
	staging string
	count   int
	done    bool
}

// NewSequenceWriter prepares to write the folder dir; its parent must exist
// or be creatable. An existing dir is replaced on Commit only when it
// contains nothing but numbered PNGs, such as an earlier run's output. A
// folder with anything else in it is rejected, so a mistyped path cannot
// delete a run folder or hand-drawn masks.
func NewSequenceWriter(dir string) (*SequenceWriter, error) {
	if err := checkReplaceable(dir); err != nil {
		return nil, err
	}

	parent := filepath.Dir(filepath.Clean(dir))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("create output folder %q: %w; choose a folder you can write to", parent, err)
	}

	staging, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".*.partial")
	if err == nil {
		// MkdirTemp makes the folder private to its owner; outputs are shared like any file.
		err = os.Chmod(staging, 0o755)
	}
	if err != nil {
		return nil, fmt.Errorf("create output folder %q: %w; choose a folder you can write to", dir, err)
	}

	return &SequenceWriter{dir: dir, staging: staging}, nil
}

// checkReplaceable accepts a missing folder, or one that holds only PNGs
// named like FrameName's output.
func checkReplaceable(dir string) error {
	if abs, err := filepath.Abs(dir); err == nil {
		if wd, err := os.Getwd(); err == nil && abs == wd {
			return fmt.Errorf("output folder %q is the current folder: name a new folder for the images", dir)
		}
	}

	info, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("output folder %q: %w", dir, err)
	}
	if !info.IsDir() {
		return fmt.Errorf("output folder %q is a file: name a folder for the images", dir)
	}

	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("output folder %q: %w", dir, err)
	}
	for _, e := range entries {
		n, ok := FrameNumber(e.Name())
		if e.IsDir() || !ok || e.Name() != FrameName(n) {
			return fmt.Errorf("output folder %q contains %q, which medvseg did not write: it replaces the whole "+
				"folder, so name a new or empty folder", dir, e.Name())
		}
	}
	return nil
}

// Write stores f as FrameName(f.Index+1).
func (s *SequenceWriter) Write(f *Frame) error {
	if s.done {
		return fmt.Errorf("write frame %d to %q: sequence writer is closed", f.Index, s.dir)
	}

	s.count++
	return WritePNG(filepath.Join(s.staging, FrameName(f.Index+1)), f)
}

// WriteGray stores a single-channel image under the given 1-based frame number.
func (s *SequenceWriter) WriteGray(number int, img *image.Gray) error {
	if s.done {
		return fmt.Errorf("write frame %d to %q: sequence writer is closed", number, s.dir)
	}

	s.count++
	return WriteGray(filepath.Join(s.staging, FrameName(number)), img)
}

// Count returns the number of images written.
func (s *SequenceWriter) Count() int { return s.count }

// Commit replaces dir with the written images.
func (s *SequenceWriter) Commit() error {
	if s.done {
		return errors.New("sequence writer is closed")
	}
	s.done = true

	if err := replaceDir(s.staging, s.dir); err != nil {
		os.RemoveAll(s.staging)
		return err
	}
	return nil
}

// Abort removes what was written; dir is left as it was.
func (s *SequenceWriter) Abort() {
	if s.done {
		return
	}
	s.done = true
	os.RemoveAll(s.staging)
}

// replaceDir moves staging to dir. An existing dir is moved aside first and
// removed only once the new one is in place.
func replaceDir(staging, dir string) error {
	old := ""
	if _, err := os.Stat(dir); err == nil {
		old = staging + ".old"
		if err := os.Rename(dir, old); err != nil {
			return fmt.Errorf("replace folder %q: %w", dir, err)
		}
	}

	if err := os.Rename(staging, dir); err != nil {
		if old != "" {
			os.Rename(old, dir)
		}
		return fmt.Errorf("replace folder %q: %w", dir, err)
	}

	if old != "" {
		os.RemoveAll(old)
	}
	return nil
}
