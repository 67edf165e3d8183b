package segment

import (
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeTestPNG(t *testing.T, path string, img image.Image) {
	t.Helper()
	file, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if err := png.Encode(file, img); err != nil {
		t.Fatal(err)
	}
}

func TestReadMaskColourModels(t *testing.T) {
	dir := t.TempDir()
	rect := image.Rect(0, 0, 3, 1)

	gray := image.NewGray(rect)
	gray.Pix = []byte{0, 200, 100}

	gray16 := image.NewGray16(rect)
	gray16.SetGray16(1, 0, color.Gray16{Y: 0xffff})
	gray16.SetGray16(2, 0, color.Gray16{Y: 0x7000})

	red := image.NewNRGBA(rect)
	red.Set(1, 0, color.NRGBA{R: 255, A: 255})
	red.Set(2, 0, color.NRGBA{R: 40, G: 40, B: 40, A: 255})

	palette := image.NewPaletted(rect, color.Palette{color.Black, color.RGBA{G: 200, A: 255}})
	palette.SetColorIndex(1, 0, 1)

	cases := []struct {
		name      string
		img       image.Image
		ambiguous int
	}{
		{"gray", gray, 2},
		{"gray16", gray16, 1},
		{"red", red, 1},
		{"palette", palette, 1},
	}
	for _, c := range cases {
		path := filepath.Join(dir, c.name+".png")
		writeTestPNG(t, path, c.img)

		mask, ambiguous, err := ReadMask(path)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		want := []byte{0, 255, 0}
		for i := range want {
			if mask.Pix[i] != want[i] {
				t.Errorf("%s: pixel %d is %d, expected %d", c.name, i, mask.Pix[i], want[i])
			}
		}
		if ambiguous != c.ambiguous {
			t.Errorf("%s: %d ambiguous pixels, expected %d", c.name, ambiguous, c.ambiguous)
		}
	}
}

func TestListMasks(t *testing.T) {
	dir := t.TempDir()
	small := image.NewGray(image.Rect(0, 0, 1, 1))
	for _, name := range []string{"frame_0012.png", "7.png", "0003.png"} {
		writeTestPNG(t, filepath.Join(dir, name), small)
	}

	masks, err := ListMasks(dir)
	if err != nil {
		t.Fatal(err)
	}
	numbers := []int{masks[0].Number, masks[1].Number, masks[2].Number}
	if numbers[0] != 3 || numbers[1] != 7 || numbers[2] != 12 {
		t.Errorf("numbers %v, expected [3 7 12]", numbers)
	}

	writeTestPNG(t, filepath.Join(dir, "0007.png"), small)
	if _, err := ListMasks(dir); err == nil || !strings.Contains(err.Error(), "frame 7") {
		t.Errorf("two masks for frame 7: error %v, expected one naming frame 7", err)
	}

	if _, err := ListMasks(t.TempDir()); err == nil {
		t.Error("empty folder: no error, expected one")
	}
}
