package segment

import (
	"fmt"
	"image"
	"math"
	"strings"
	"testing"
)

// squareMask returns a width x height mask with 255 on r.
func squareMask(width, height int, r image.Rectangle) *image.Gray {
	m := image.NewGray(image.Rect(0, 0, width, height))
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			m.Pix[y*m.Stride+x] = 255
		}
	}
	return m
}

func constantFlow(width, height int, dx, dy float32) *FlowField {
	f := NewFlowField(width, height)
	f.Fill(dx, dy)
	return f
}

// fillFlow sets every vector of f to fn(x, y).
func fillFlow(f *FlowField, fn func(x, y int) (float32, float32)) {
	v := f.Vectors()
	for y := 0; y < f.Height(); y++ {
		for x := 0; x < f.Width(); x++ {
			i := 2 * (y*f.Width() + x)
			v[i], v[i+1] = fn(x, y)
		}
	}
}

func TestWarpMaskTranslation(t *testing.T) {
	const width, height = 160, 120
	square := image.Rect(50, 40, 90, 70)
	src := squareMask(width, height, square)

	cases := []struct{ dx, dy int }{{0, 0}, {7, -5}, {-12, 3}, {1, 1}}
	var w Warper
	defer w.Close()
	for _, c := range cases {
		name := fmt.Sprintf("flow (%d,%d)", c.dx, c.dy)
		flow := constantFlow(width, height, float32(c.dx), float32(c.dy))

		// Backward warping samples src at x + flow, so the square moves by -flow.
		want := squareMask(width, height, square.Sub(image.Pt(c.dx, c.dy)))
		var got image.Gray
		if err := w.WarpMask(src, flow, &got); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if diff := countDifferent(want, &got); diff != 0 {
			t.Errorf("%s: %d pixels differ from the square moved by (%d,%d)", name, diff, -c.dx, -c.dy)
		}
		flow.Close()
	}
}

func TestWarpMaskSubpixelThreshold(t *testing.T) {
	const width, height = 64, 48
	src := squareMask(width, height, image.Rect(20, 10, 40, 30))
	var w Warper
	defer w.Close()

	// A shift of 0.4 px keeps each pixel on the side of the 127 threshold it
	// was on, and a shift of 0.6 px moves the boundary by one pixel.
	cases := []struct {
		dx   float32
		want image.Rectangle
	}{{0.4, image.Rect(20, 10, 40, 30)}, {0.6, image.Rect(19, 10, 39, 30)}, {-0.6, image.Rect(21, 10, 41, 30)}}
	for _, c := range cases {
		flow := constantFlow(width, height, c.dx, 0)
		var got image.Gray
		if err := w.WarpMask(src, flow, &got); err != nil {
			t.Fatal(err)
		}
		if diff := countDifferent(squareMask(width, height, c.want), &got); diff != 0 {
			t.Errorf("flow (%v,0): %d pixels differ from the square at %v", c.dx, diff, c.want)
		}
		for i, v := range got.Pix {
			if v != 0 && v != 255 {
				t.Errorf("flow (%v,0): pixel %d is %d, expected 0 or 255", c.dx, i, v)
				break
			}
		}
		flow.Close()
	}
}

func TestWarpMapTranslation(t *testing.T) {
	const width, height = 80, 60
	src := NewMap(width, height)
	for y := 0; y < height; y++ {
		for x := 0; x < width; x++ {
			src.Pix[y*width+x] = float32(x+2*y) / 200
		}
	}

	var w Warper
	defer w.Close()
	flow := constantFlow(width, height, 2.5, -1)
	defer flow.Close()
	var got Map
	if err := w.WarpMap(src, flow, &got); err != nil {
		t.Fatal(err)
	}

	// The map is linear, so bilinear sampling at x + (2.5, -1) is exact
	// wherever that point lies inside the map.
	for y := 1; y < height; y++ {
		for x := 0; x < width-3; x++ {
			want := (float64(x) + 2.5 + 2*float64(y-1)) / 200
			if d := math.Abs(float64(got.Pix[y*width+x]) - want); d > 1e-5 {
				t.Fatalf("pixel (%d,%d) = %v, expected %v", x, y, got.Pix[y*width+x], want)
			}
		}
	}
}

func TestComposeMatchesSequentialWarp(t *testing.T) {
	const width, height = 200, 150
	ab := NewFlowField(width, height)
	defer ab.Close()
	bc := NewFlowField(width, height)
	defer bc.Close()
	fillFlow(ab, func(x, y int) (float32, float32) {
		return float32(3 + 2*math.Sin(float64(y)/25)), float32(-2 + 1.5*math.Cos(float64(x)/30))
	})
	fillFlow(bc, func(x, y int) (float32, float32) {
		return float32(-4 + 1.5*math.Cos(float64(x+y)/40)), float32(2.5 * math.Sin(float64(x)/35))
	})

	// A smooth map of frame c, so interpolation error stays small.
	mapC := NewMap(width, height)
	for y := 0; y < height; y++ {
		for x := 0; x < width; x++ {
			mapC.Pix[y*width+x] = float32(0.5 + 0.5*math.Sin(float64(x)/15)*math.Cos(float64(y)/20))
		}
	}

	var w Warper
	defer w.Close()
	var ac FlowField
	defer ac.Close()
	if err := w.Compose(ab, bc, &ac); err != nil {
		t.Fatal(err)
	}

	var mapB, sequential, composed Map
	if err := w.WarpMap(mapC, bc, &mapB); err != nil {
		t.Fatal(err)
	}
	if err := w.WarpMap(&mapB, ab, &sequential); err != nil {
		t.Fatal(err)
	}
	if err := w.WarpMap(mapC, &ac, &composed); err != nil {
		t.Fatal(err)
	}

	// Flows stay below 10 px, so pixels 16 px from the edge never sample
	// outside the map.
	const border = 16
	maxDiff := 0.0
	for y := border; y < height-border; y++ {
		for x := border; x < width-border; x++ {
			i := y*width + x
			maxDiff = math.Max(maxDiff, math.Abs(float64(sequential.Pix[i]-composed.Pix[i])))
		}
	}
	t.Logf("max difference between composed and sequential warps: %.4f", maxDiff)
	if maxDiff > 0.01 {
		t.Errorf("composed warp differs from sequential warps by up to %.4f, expected at most 0.01", maxDiff)
	}

	// Constant flows compose exactly.
	translation := constantFlow(width, height, 2, 1)
	defer translation.Close()
	other := constantFlow(width, height, 3, -4)
	defer other.Close()
	if err := w.Compose(translation, other, translation); err != nil {
		t.Fatal(err)
	}
	if dx, dy := translation.At(100, 70); dx != 5 || dy != -3 {
		t.Errorf("(2,1) composed with (3,-4) in place: (%v,%v), expected (5,-3)", dx, dy)
	}
}

func TestWarpBeatsCopyOnEndoscopy(t *testing.T) {
	sets := []struct {
		name  string
		pairs []endoPair
	}{
		{"CVC pairs where Farneback gains 0.1 IoU", cvcWarpPairs(t, 0.1)},
		{"NBI clip Seq_015_42000", segColPairs(t, "Seq_015_42000")},
	}
	methods := []string{FlowDISUltrafast, FlowDISFast, FlowDISMedium, FlowFarneback}

	var w Warper
	defer w.Close()
	for _, set := range sets {
		if len(set.pairs) < 5 {
			t.Fatalf("%s: %d pairs, expected at least 5", set.name, len(set.pairs))
		}

		copied := 0.0
		for _, p := range set.pairs {
			copied += mustIoU(t, p.prev.mask, p.next.mask)
		}
		copied /= float64(len(set.pairs))

		for _, method := range methods {
			est, err := NewFlowEstimator(FlowOptions{Method: method})
			if err != nil {
				t.Fatal(err)
			}
			var flow FlowField
			var warped image.Gray
			total := 0.0
			for _, p := range set.pairs {
				// The flow from the next frame to the previous one carries
				// the previous mask onto the next frame.
				if err := est.Compute(p.next.frame, p.prev.frame, &flow); err != nil {
					t.Fatalf("%s: %v", p.name, err)
				}
				if err := w.WarpMask(p.prev.mask, &flow, &warped); err != nil {
					t.Fatalf("%s: %v", p.name, err)
				}
				total += mustIoU(t, &warped, p.next.mask)
			}
			est.Close()
			flow.Close()

			mean := total / float64(len(set.pairs))
			t.Logf("%s, %d pairs, %s: mean IoU unwarped %.3f, warped %.3f", set.name, len(set.pairs), method, copied, mean)
			if mean <= copied {
				t.Errorf("%s, %s: warped mask mean IoU %.3f does not beat the unwarped mask's %.3f",
					set.name, method, mean, copied)
			}
		}
	}
}

func mustIoU(t *testing.T, a, b *image.Gray) float64 {
	t.Helper()
	v, err := IoU(a, b)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestWarpRejectsBadInput(t *testing.T) {
	flow := constantFlow(640, 480, 1, 1)
	defer flow.Close()
	smallFlow := constantFlow(320, 240, 1, 1)
	defer smallFlow.Close()
	var empty FlowField
	mask := image.NewGray(image.Rect(0, 0, 640, 480))
	smallMask := image.NewGray(image.Rect(0, 0, 320, 240))
	subMask := mask.SubImage(image.Rect(0, 0, 320, 240)).(*image.Gray)
	var w Warper
	defer w.Close()

	cases := []struct {
		name string
		call func() error
		want []string
	}{
		{"mask smaller than flow", func() error { return w.WarpMask(smallMask, flow, &image.Gray{}) },
			[]string{"warp mask: mask 320x240 does not match flow 640x480"}},
		{"empty flow", func() error { return w.WarpMask(mask, &empty, &image.Gray{}) },
			[]string{"warp mask: empty flow 0x0"}},
		{"empty mask", func() error { return w.WarpMask(&image.Gray{}, flow, &image.Gray{}) },
			[]string{"mask 0x0 does not match flow 640x480"}},
		{"dst is src", func() error { return w.WarpMask(mask, flow, mask) },
			[]string{"shares memory"}},
		{"padded mask", func() error { return w.WarpMask(subMask, smallFlow, &image.Gray{}) },
			[]string{"320x240", "stride 640"}},
		{"map larger than flow", func() error { return w.WarpMap(NewMap(640, 480), smallFlow, &Map{}) },
			[]string{"warp map: map 640x480 does not match flow 320x240"}},
		{"map on empty flow", func() error { return w.WarpMap(NewMap(640, 480), &empty, &Map{}) },
			[]string{"warp map: empty flow 0x0"}},
		{"compose mismatched flows", func() error { return w.Compose(flow, smallFlow, &FlowField{}) },
			[]string{"compose flows: flow 320x240 does not match flow 640x480"}},
	}
	for _, c := range cases {
		err := c.call()
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		for _, want := range c.want {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %q does not contain %q", c.name, err, want)
			}
		}
	}
}

// countDifferent returns the number of pixels where a and b differ, or -1
// when their sizes differ.
func countDifferent(a, b *image.Gray) int {
	if a.Rect != b.Rect {
		return -1
	}
	n := 0
	for i := range a.Pix {
		if a.Pix[i] != b.Pix[i] {
			n++
		}
	}
	return n
}

// BenchmarkWarp measures one mask warp and one map warp at 640x480 by a
// real DIS flow.
func BenchmarkWarp(b *testing.B) {
	pairs := segColPairs(b, "Seq_015_42000")
	p := pairs[0]
	est, err := NewDISFlow(DISFast, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer est.Close()
	var flow FlowField
	defer flow.Close()
	if err := est.Compute(p.next.frame, p.prev.frame, &flow); err != nil {
		b.Fatal(err)
	}

	prob := NewMap(flow.Width(), flow.Height())
	for i, v := range p.prev.mask.Pix {
		prob.Pix[i] = float32(v) / 255
	}

	var w Warper
	defer w.Close()
	b.Run("mask/640x480", func(b *testing.B) {
		var dst image.Gray
		for i := 0; i < b.N; i++ {
			if err := w.WarpMask(p.prev.mask, &flow, &dst); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/warp")
	})
	b.Run("map/640x480", func(b *testing.B) {
		var dst Map
		for i := 0; i < b.N; i++ {
			if err := w.WarpMap(prob, &flow, &dst); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/warp")
	})
}
