package segment

import (
	"image"
	"image/color"
	"math"
	"strings"
	"testing"

	"github.com/medvseg/medvseg/codec"
)

// gradientFrame returns a frame whose pixels all differ from pure red.
func gradientFrame(width, height int) *codec.Frame {
	f := codec.NewFrame(width, height)
	for y := 0; y < height; y++ {
		for x := 0; x < width; x++ {
			i := 3 * (y*width + x)
			f.Pix[i], f.Pix[i+1], f.Pix[i+2] = uint8(x), uint8(y), uint8((x+y)/4)
		}
	}
	return f
}

func TestOverlayDrawsInsideMaskOnly(t *testing.T) {
	const width, height, lineWidth = 160, 120, 3
	square := image.Rect(50, 40, 100, 90)
	mask := squareMask(width, height, square)
	red := color.RGBA{R: 255, A: 255}

	cases := []struct {
		name    string
		options OverlayOptions
	}{
		{"fill and contour", OverlayOptions{Colour: red, Opacity: 0.5, LineWidth: lineWidth}},
		{"opaque fill, no contour", OverlayOptions{Colour: red, Opacity: 1}},
		{"contour only", OverlayOptions{Colour: red, LineWidth: lineWidth}},
	}
	for _, c := range cases {
		original := gradientFrame(width, height)
		frame := gradientFrame(width, height)
		o, err := NewOverlay(c.options)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if err := o.Draw(frame, mask); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		o.Close()

		// The contour reaches lineWidth/2 px beyond the boundary, so pixels
		// lineWidth away from the mask and from its boundary are checked.
		outside := square.Inset(-lineWidth)
		inside := square.Inset(lineWidth)
		for y := 0; y < height; y++ {
			for x := 0; x < width; x++ {
				p := image.Pt(x, y)
				i := 3 * (y*width + x)
				got := [3]uint8{frame.Pix[i], frame.Pix[i+1], frame.Pix[i+2]}
				orig := [3]uint8{original.Pix[i], original.Pix[i+1], original.Pix[i+2]}
				switch {
				case !p.In(outside) || (c.options.LineWidth == 0 && !p.In(square)):
					if got != orig {
						t.Fatalf("%s: pixel %v outside the mask changed from %v to %v", c.name, p, orig, got)
					}
				case p.In(inside):
					want := blendBGR(orig, red, c.options.Opacity)
					if !closeBGR(got, want, 1) {
						t.Fatalf("%s: pixel %v inside the mask is %v, expected %v", c.name, p, got, want)
					}
				}
			}
		}

		if c.options.LineWidth > 0 {
			if got := frame.Pix[3*(square.Min.Y*width+70):][:3]; got[0] != 0 || got[1] != 0 || got[2] != 255 {
				t.Errorf("%s: boundary pixel (70,%d) is BGR %v, expected the contour colour [0 0 255]", c.name, square.Min.Y, got)
			}
		}
	}
}

// blendBGR returns orig blended with colour c at opacity alpha, in BGR order.
func blendBGR(orig [3]uint8, c color.RGBA, alpha float64) [3]uint8 {
	target := [3]float64{float64(c.B), float64(c.G), float64(c.R)}
	var out [3]uint8
	for k := range out {
		out[k] = uint8(math.Round((1-alpha)*float64(orig[k]) + alpha*target[k]))
	}
	return out
}

func closeBGR(a, b [3]uint8, tolerance int) bool {
	for k := range a {
		if d := int(a[k]) - int(b[k]); d > tolerance || d < -tolerance {
			return false
		}
	}
	return true
}

func TestOverlayReusesMatsAcrossFrames(t *testing.T) {
	o, err := NewOverlay(DefaultOverlayOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()

	mask := squareMask(64, 48, image.Rect(10, 10, 30, 30))
	if err := o.Draw(gradientFrame(64, 48), mask); err != nil {
		t.Fatal(err)
	}
	colour, blended := o.colour.Ptr(), o.blended.Ptr()
	if err := o.Draw(gradientFrame(64, 48), mask); err != nil {
		t.Fatal(err)
	}
	if o.colour.Ptr() != colour || o.blended.Ptr() != blended {
		t.Errorf("second frame of the same size replaced the overlay's Mats")
	}

	// A frame of another size gets a colour Mat of that size.
	big := gradientFrame(128, 96)
	if err := o.Draw(big, squareMask(128, 96, image.Rect(60, 40, 90, 70))); err != nil {
		t.Fatal(err)
	}
	if o.colour.Cols() != 128 || o.colour.Rows() != 96 {
		t.Errorf("colour Mat %dx%d after a 128x96 frame, expected 128x96", o.colour.Cols(), o.colour.Rows())
	}
}

func TestOverlayRejectsBadInput(t *testing.T) {
	o, err := NewOverlay(DefaultOverlayOptions)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()

	frame := codec.NewFrame(640, 480)
	cases := []struct {
		name  string
		frame *codec.Frame
		mask  *image.Gray
		want  string
	}{
		{"mask smaller than frame", frame, image.NewGray(image.Rect(0, 0, 320, 240)),
			"draw overlay: mask 320x240 does not match frame 640x480"},
		{"empty frame and mask", &codec.Frame{}, &image.Gray{}, "draw overlay: empty or short frame 0x0"},
		{"short frame", &codec.Frame{Width: 640, Height: 480, Pix: make([]byte, 10)},
			image.NewGray(image.Rect(0, 0, 640, 480)), "640x480 (10 bytes)"},
	}
	for _, c := range cases {
		err := o.Draw(c.frame, c.mask)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q does not contain %q", c.name, err, c.want)
		}
	}

	for _, opts := range []OverlayOptions{{Opacity: 1.5}, {Opacity: -0.1}, {Opacity: math.NaN()}, {Opacity: 0.5, LineWidth: -1}} {
		if _, err := NewOverlay(opts); err == nil {
			t.Errorf("options %+v: no error", opts)
		}
	}

	closed, _ := NewOverlay(DefaultOverlayOptions)
	closed.Close()
	closed.Close()
	if err := closed.Draw(frame, image.NewGray(image.Rect(0, 0, 640, 480))); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Draw after Close: error %v, expected one saying the overlay is closed", err)
	}
}
