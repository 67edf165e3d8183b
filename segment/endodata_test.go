package segment

import (
	"encoding/csv"
	"image"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"gocv.io/x/gocv"

	"github.com/medvseg/medvseg/codec"
)

// endoDataDir is the shared folder of real endoscopy frames and masks, as seen
// from this package's folder. Its terms forbid copying it into the repository.
const endoDataDir = "../../shared/data/endo"

// endoPath returns the path of rel under the endoscopy data folder, and fails
// the test when that path is missing.
func endoPath(tb testing.TB, rel string) string {
	tb.Helper()
	path := filepath.Join(endoDataDir, rel)
	if _, err := os.Stat(path); err != nil {
		tb.Fatalf("endoscopy test data missing: %v; these tests read real frames from %s next to the repository (shared/data/endo)",
			err, endoDataDir)
	}
	return path
}

// endoSample is one frame of a clip with its ground-truth mask.
type endoSample struct {
	frame *codec.Frame
	mask  *image.Gray
}

func readEndoSample(tb testing.TB, clipDir, name string) endoSample {
	tb.Helper()
	frame := &codec.Frame{}
	if err := codec.ReadPNG(filepath.Join(clipDir, "frames", name), frame); err != nil {
		tb.Fatal(err)
	}
	mask, err := codec.ReadGray(filepath.Join(clipDir, "masks", name))
	if err != nil {
		tb.Fatal(err)
	}
	return endoSample{frame: frame, mask: mask}
}

// endoPair is a frame and the one before it in the same clip.
type endoPair struct {
	name       string
	prev, next endoSample
}

// cvcWarpPairs returns the pairs of consecutive CVC-ClinicDB frames on which
// the manifest's Farneback warp IoU beats the IoU of the unwarped previous
// mask by at least minGain.
func cvcWarpPairs(tb testing.TB, minGain float64) []endoPair {
	tb.Helper()
	file, err := os.Open(endoPath(tb, "cvc/manifest.csv"))
	if err != nil {
		tb.Fatal(err)
	}
	defer file.Close()

	rows, err := csv.NewReader(file).ReadAll()
	if err != nil {
		tb.Fatalf("read CVC manifest: %v", err)
	}
	if len(rows) < 2 || len(rows[0]) < 7 || rows[0][5] != "mask_iou_vs_prev" || rows[0][6] != "farneback_warp_iou_vs_prev" {
		tb.Fatalf("CVC manifest: unexpected header %v", rows[0])
	}

	var pairs []endoPair
	for i := 2; i < len(rows); i++ {
		row, prev := rows[i], rows[i-1]
		if row[5] == "" || row[6] == "" || row[0] != prev[0] {
			continue
		}
		raw, err1 := strconv.ParseFloat(row[5], 64)
		warped, err2 := strconv.ParseFloat(row[6], 64)
		if err1 != nil || err2 != nil {
			tb.Fatalf("CVC manifest row %d: invalid IoU %q or %q", i+1, row[5], row[6])
		}
		if warped-raw < minGain {
			continue
		}

		clipDir := endoPath(tb, filepath.Join("cvc", row[0]))
		pairs = append(pairs, endoPair{
			name: row[0] + "/" + row[1],
			prev: readEndoSample(tb, clipDir, prev[1]),
			next: readEndoSample(tb, clipDir, row[1]),
		})
	}
	return pairs
}

// segColPairs returns the consecutive frame pairs of a SegCol clip.
func segColPairs(tb testing.TB, clip string) []endoPair {
	tb.Helper()
	clipDir := endoPath(tb, filepath.Join("segcol", clip))
	entries, err := codec.ListSequence(filepath.Join(clipDir, "frames"))
	if err != nil {
		tb.Fatal(err)
	}
	if len(entries) < 2 {
		tb.Fatalf("SegCol clip %s: %d frames, expected at least 2", clip, len(entries))
	}

	var pairs []endoPair
	prev := readEndoSample(tb, clipDir, filepath.Base(entries[0].Path))
	for _, e := range entries[1:] {
		next := readEndoSample(tb, clipDir, filepath.Base(e.Path))
		pairs = append(pairs, endoPair{name: clip + "/" + filepath.Base(e.Path), prev: prev, next: next})
		prev = next
	}
	return pairs
}

// resizedFrame returns f resized to width x height.
func resizedFrame(tb testing.TB, f *codec.Frame, width, height int) *codec.Frame {
	tb.Helper()
	src, err := frameView(f)
	if err != nil {
		tb.Fatal(err)
	}
	defer src.Close()

	out := codec.NewFrame(width, height)
	dst, err := frameView(out)
	if err != nil {
		tb.Fatal(err)
	}
	defer dst.Close()

	gocv.Resize(src, &dst, image.Pt(width, height), 0, 0, gocv.InterpolationArea)
	return out
}
