package segment

import (
	"image"
	"math"
	"strings"
	"testing"

	"gocv.io/x/gocv"
)

// filledMask returns a width x height mask with every pixel set to v.
func filledMask(width, height int, v uint8) *image.Gray {
	m := image.NewGray(image.Rect(0, 0, width, height))
	for i := range m.Pix {
		m.Pix[i] = v
	}
	return m
}

func TestMetricsKnownAnswers(t *testing.T) {
	const n = 100
	square := image.Rect(10, 10, 30, 30) // 20x20, 400 pixels
	empty := filledMask(n, n, 0)

	cases := []struct {
		name      string
		pred, gt  *image.Gray
		tolerance float64
		dice, iou float64
		bf        BoundaryScore
	}{
		{"identical squares", squareMask(n, n, square), squareMask(n, n, square), DAVISBoundaryTolerance,
			1, 1, BoundaryScore{1, 1, 1}},
		{"both empty", empty, filledMask(n, n, 0), DAVISBoundaryTolerance,
			1, 1, BoundaryScore{1, 1, 1}},
		{"prediction empty", empty, squareMask(n, n, square), DAVISBoundaryTolerance,
			0, 0, BoundaryScore{1, 0, 0}},
		{"ground truth empty", squareMask(n, n, square), empty, DAVISBoundaryTolerance,
			0, 0, BoundaryScore{0, 1, 0}},
		{"empty against full image", empty, filledMask(n, n, 255), DAVISBoundaryTolerance,
			0, 0, BoundaryScore{1, 0, 0}},
		// Overlap 10x20 = 200 of 400 + 400: Dice 400/800, IoU 200/600.
		// The DAVIS radius is ceil(0.008 * 141.4) = 2 px. Of the 76 boundary
		// pixels of each square, 12 on the top row, 12 on the bottom row and
		// 4 on the inner side lie within 2 px of the other boundary.
		{"half overlap", squareMask(n, n, square), squareMask(n, n, square.Add(image.Pt(10, 0))), DAVISBoundaryTolerance,
			0.5, 1.0 / 3, BoundaryScore{28.0 / 76, 28.0 / 76, 28.0 / 76}},
		{"disjoint", squareMask(n, n, square), squareMask(n, n, square.Add(image.Pt(50, 50))), DAVISBoundaryTolerance,
			0, 0, BoundaryScore{0, 0, 0}},
		// Shift by 3 px with a 1 px radius (0.005 of the 141 px diagonal):
		// of the 76 boundary pixels of each square, the 18 + 18 on the top
		// and bottom rows next to the other square's rows and 2 on the
		// side facing it lie within 1 px, so 38/76 match in each direction.
		// Overlap 17x20 = 340: Dice 680/800, IoU 340/460.
		{"shift 3 px, radius 1", squareMask(n, n, square), squareMask(n, n, square.Add(image.Pt(3, 0))), 0.005,
			0.85, 340.0 / 460, BoundaryScore{0.5, 0.5, 0.5}},
		// A 3 px radius (ceil(0.02 * 141.4) = 3) covers the whole shift.
		{"shift 3 px, radius 3", squareMask(n, n, square), squareMask(n, n, square.Add(image.Pt(3, 0))), 0.02,
			0.85, 340.0 / 460, BoundaryScore{1, 1, 1}},
		// Values above 127 are foreground, 127 and below background.
		{"anti-aliased levels", filledMask(n, n, 128), filledMask(n, n, 255), DAVISBoundaryTolerance,
			1, 1, BoundaryScore{1, 1, 1}},
		{"level 127 is background", filledMask(n, n, 127), empty, DAVISBoundaryTolerance,
			1, 1, BoundaryScore{1, 1, 1}},
	}

	const eps = 1e-9
	for _, c := range cases {
		dice, err := Dice(c.pred, c.gt)
		if err != nil {
			t.Fatalf("%s: Dice: %v", c.name, err)
		}
		if math.Abs(dice-c.dice) > eps {
			t.Errorf("%s: Dice %v, expected %v", c.name, dice, c.dice)
		}

		iou, err := IoU(c.pred, c.gt)
		if err != nil {
			t.Fatalf("%s: IoU: %v", c.name, err)
		}
		if math.Abs(iou-c.iou) > eps {
			t.Errorf("%s: IoU %v, expected %v", c.name, iou, c.iou)
		}

		bf, err := BoundaryF(c.pred, c.gt, c.tolerance)
		if err != nil {
			t.Fatalf("%s: BoundaryF: %v", c.name, err)
		}
		if math.Abs(bf.Precision-c.bf.Precision) > eps {
			t.Errorf("%s: boundary precision %v, expected %v", c.name, bf.Precision, c.bf.Precision)
		}
		if math.Abs(bf.Recall-c.bf.Recall) > eps {
			t.Errorf("%s: boundary recall %v, expected %v", c.name, bf.Recall, c.bf.Recall)
		}
		if math.Abs(bf.F-c.bf.F) > eps {
			t.Errorf("%s: boundary F %v, expected %v", c.name, bf.F, c.bf.F)
		}
	}
}

func TestBoundaryFPrecisionRecallAsymmetry(t *testing.T) {
	// A prediction made of the ground truth plus a far blob keeps full
	// recall, and its precision is the share of its boundary on the
	// ground truth's: 76 of 76 + 36 (the blob is 10x10).
	const n = 100
	gt := squareMask(n, n, image.Rect(10, 10, 30, 30))
	pred := squareMask(n, n, image.Rect(10, 10, 30, 30))
	for y := 60; y < 70; y++ {
		for x := 60; x < 70; x++ {
			pred.Pix[y*n+x] = 255
		}
	}

	bf, err := BoundaryF(pred, gt, DAVISBoundaryTolerance)
	if err != nil {
		t.Fatal(err)
	}
	if want := 76.0 / 112; math.Abs(bf.Precision-want) > 1e-9 {
		t.Errorf("precision %v, expected %v", bf.Precision, want)
	}
	if bf.Recall != 1 {
		t.Errorf("recall %v, expected 1", bf.Recall)
	}
}

func TestMetricsRejectBadInput(t *testing.T) {
	a := image.NewGray(image.Rect(0, 0, 640, 480))
	b := image.NewGray(image.Rect(0, 0, 320, 240))
	empty := &image.Gray{}

	if _, err := Dice(a, b); err == nil || !strings.Contains(err.Error(), "dice: mask 320x240 does not match mask 640x480") {
		t.Errorf("Dice size mismatch: error %v", err)
	}
	if _, err := IoU(b, a); err == nil || !strings.Contains(err.Error(), "IoU: mask 640x480 does not match mask 320x240") {
		t.Errorf("IoU size mismatch: error %v", err)
	}
	if _, err := BoundaryF(a, b, DAVISBoundaryTolerance); err == nil || !strings.Contains(err.Error(), "boundary F: mask 320x240 does not match mask 640x480") {
		t.Errorf("BoundaryF size mismatch: error %v", err)
	}
	if _, err := Dice(empty, empty); err == nil || !strings.Contains(err.Error(), "empty mask 0x0") {
		t.Errorf("Dice on 0x0 masks: error %v", err)
	}
	if _, err := IoU(empty, a); err == nil || !strings.Contains(err.Error(), "mask 640x480 does not match mask 0x0") {
		t.Errorf("IoU 0x0 against 640x480: error %v", err)
	}
	for _, tol := range []float64{0, -0.01, math.NaN(), math.Inf(1)} {
		if _, err := BoundaryF(a, a, tol); err == nil || !strings.Contains(err.Error(), "invalid tolerance") {
			t.Errorf("BoundaryF tolerance %v: error %v, expected an invalid tolerance error", tol, err)
		}
	}
}

func TestDiscKernelMatchesDAVIS(t *testing.T) {
	kernel := discKernel(2)
	defer kernel.Close()

	cases := []struct {
		x, y int
		want uint8
	}{{0, 0, 1}, {2, 0, 1}, {0, -2, 1}, {1, 1, 1}, {2, 1, 0}, {-1, 2, 0}, {2, 2, 0}}
	for _, c := range cases {
		if v := kernel.GetUCharAt(c.y+2, c.x+2); v != c.want {
			t.Errorf("radius 2, offset (%d,%d): %d, expected %d", c.x, c.y, v, c.want)
		}
	}
	if n := gocv.CountNonZero(kernel); n != 13 {
		t.Errorf("radius 2: %d offsets, expected 13", n)
	}
}
