package segment

import (
	"image"
	"strings"
	"testing"

	"github.com/medvseg/medvseg/codec"
)

func TestConsistencyFlagsOccludedRegion(t *testing.T) {
	// A square object moves 12 px to the right over a static background
	// between frames a and b, and so covers a 12 px strip of background
	// that is visible in a. The flows are the true motion of that scene.
	const width, height, shift = 200, 160, 12
	inA := image.Rect(60, 60, 100, 100)
	inB := inA.Add(image.Pt(shift, 0))
	occluded := image.Rect(inA.Max.X, inA.Min.Y, inB.Max.X, inA.Max.Y)

	forward := NewFlowField(width, height)
	defer forward.Close()
	backward := NewFlowField(width, height)
	defer backward.Close()
	fillFlow(forward, func(x, y int) (float32, float32) {
		if image.Pt(x, y).In(inA) {
			return shift, 0
		}
		return 0, 0
	})
	fillFlow(backward, func(x, y int) (float32, float32) {
		if image.Pt(x, y).In(inB) {
			return -shift, 0
		}
		return 0, 0
	})

	var w Warper
	defer w.Close()
	var got image.Gray
	if err := w.Consistency(forward, backward, 1, &got); err != nil {
		t.Fatal(err)
	}

	want := image.NewGray(image.Rect(0, 0, width, height))
	for i := range want.Pix {
		want.Pix[i] = 255
	}
	for y := occluded.Min.Y; y < occluded.Max.Y; y++ {
		for x := occluded.Min.X; x < occluded.Max.X; x++ {
			want.Pix[y*width+x] = 0
		}
	}
	if diff := countDifferent(want, &got); diff != 0 {
		t.Errorf("%d pixels differ from a mask that is 0 exactly on the occluded strip %v", diff, occluded)
	}
	if v := got.GrayAt(occluded.Min.X+3, occluded.Min.Y+5).Y; v != 0 {
		t.Errorf("occluded pixel: %d, expected 0", v)
	}
	if v := got.GrayAt(inA.Min.X+3, inA.Min.Y+5).Y; v != 255 {
		t.Errorf("pixel on the moving object: %d, expected 255", v)
	}
}

func TestConsistencyFlagsPixelsLeavingView(t *testing.T) {
	const width, height = 100, 80
	forward := constantFlow(width, height, 10, 0)
	defer forward.Close()
	backward := constantFlow(width, height, -10, 0)
	defer backward.Close()

	var w Warper
	defer w.Close()
	var got image.Gray
	if err := w.Consistency(forward, backward, 0.5, &got); err != nil {
		t.Fatal(err)
	}

	// Pixel x samples frame b at x + 10, which is inside for x <= width - 11.
	for _, c := range []struct {
		x    int
		want uint8
	}{{0, 255}, {width - 11, 255}, {width - 10, 0}, {width - 1, 0}} {
		if v := got.GrayAt(c.x, 40).Y; v != c.want {
			t.Errorf("pixel x=%d: %d, expected %d", c.x, v, c.want)
		}
	}
}

func TestConsistencyThresholdIsStrict(t *testing.T) {
	const width, height = 64, 48
	forward := constantFlow(width, height, 2, 0)
	defer forward.Close()
	// The round trip misses by exactly 1 px.
	backward := constantFlow(width, height, -1, 0)
	defer backward.Close()

	var w Warper
	defer w.Close()
	for _, c := range []struct {
		threshold float64
		want      uint8
	}{{1, 0}, {1.01, 255}, {0.99, 0}} {
		var got image.Gray
		if err := w.Consistency(forward, backward, c.threshold, &got); err != nil {
			t.Fatal(err)
		}
		if v := got.GrayAt(20, 20).Y; v != c.want {
			t.Errorf("error 1 px, threshold %v: %d, expected %d", c.threshold, v, c.want)
		}
	}
}

func TestConsistencyRejectsBadInput(t *testing.T) {
	big := constantFlow(640, 480, 0, 0)
	defer big.Close()
	small := constantFlow(320, 240, 0, 0)
	defer small.Close()
	var w Warper
	defer w.Close()

	cases := []struct {
		name              string
		forward, backward *FlowField
		threshold         float64
		dst               *image.Gray
		want              string
	}{
		{"size mismatch", big, small, 1, &image.Gray{}, "flow consistency: flow 320x240 does not match flow 640x480"},
		{"empty flow", &FlowField{}, big, 1, &image.Gray{}, "flow consistency: empty flow 0x0"},
		{"zero threshold", big, big, 0, &image.Gray{}, "invalid threshold 0"},
		{"negative threshold", big, big, -1, &image.Gray{}, "invalid threshold -1"},
		{"nil dst", big, big, 1, nil, "dst is nil"},
	}
	for _, c := range cases {
		err := w.Consistency(c.forward, c.backward, c.threshold, c.dst)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q does not contain %q", c.name, err, c.want)
		}
	}
}

func TestConsistencyOnEstimatedFlow(t *testing.T) {
	// A textured patch cut from one real frame moves 12 px to the right over
	// another real frame, so it covers a 12 px strip of that frame.
	clipDir := endoPath(t, "segcol/Seq_003_35920")
	background := readEndoSample(t, clipDir, "frame_0000.png").frame
	texture := readEndoSample(t, endoPath(t, "segcol/Seq_015_42000"), "frame_0000.png").frame
	const shift = 12
	inA := image.Rect(240, 180, 340, 280)
	inB := inA.Add(image.Pt(shift, 0))
	occluded := image.Rect(inA.Max.X, inA.Min.Y, inB.Max.X, inA.Max.Y)

	a, b := codec.NewFrame(background.Width, background.Height), codec.NewFrame(background.Width, background.Height)
	a.CopyFrom(background)
	b.CopyFrom(background)
	pastePatch(a, texture, inA)
	pastePatch(b, texture, inB)

	est, err := NewDISFlow(DISMedium, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer est.Close()
	var forward, backward FlowField
	defer forward.Close()
	defer backward.Close()
	if err := est.Compute(a, b, &forward); err != nil {
		t.Fatal(err)
	}
	if err := est.Compute(b, a, &backward); err != nil {
		t.Fatal(err)
	}

	var w Warper
	defer w.Close()
	var got image.Gray
	if err := w.Consistency(&forward, &backward, 1, &got); err != nil {
		t.Fatal(err)
	}

	flaggedOccluded := flaggedShare(&got, occluded)
	far := image.Rect(40, 40, 160, 140)
	flaggedFar := flaggedShare(&got, far)
	t.Logf("flagged: %.1f%% of the occluded strip, %.1f%% of static background", 100*flaggedOccluded, 100*flaggedFar)
	if flaggedOccluded < 0.5 {
		t.Errorf("occluded strip %v: %.1f%% flagged, expected at least 50%%", occluded, 100*flaggedOccluded)
	}
	if flaggedFar > 0.05 {
		t.Errorf("static background %v: %.1f%% flagged, expected at most 5%%", far, 100*flaggedFar)
	}
}

// pastePatch copies the patch of src whose top-left corner is at (100, 100)
// onto dst at r.
func pastePatch(dst, src *codec.Frame, r image.Rectangle) {
	for y := 0; y < r.Dy(); y++ {
		from := ((100+y)*src.Width + 100) * 3
		to := ((r.Min.Y+y)*dst.Width + r.Min.X) * 3
		copy(dst.Pix[to:to+3*r.Dx()], src.Pix[from:from+3*r.Dx()])
	}
}

// flaggedShare returns the share of pixels in r that mask sets to 0.
func flaggedShare(mask *image.Gray, r image.Rectangle) float64 {
	n := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if mask.GrayAt(x, y).Y == 0 {
				n++
			}
		}
	}
	return float64(n) / float64(r.Dx()*r.Dy())
}
