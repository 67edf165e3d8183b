package segment

import (
	"image"
	"path/filepath"
	"testing"

	"github.com/medvseg/medvseg/codec"
)

// shiftFrame returns src moved right by dx pixels, the left edge repeated.
func shiftFrame(src *codec.Frame, dx int) *codec.Frame {
	out := codec.NewFrame(src.Width, src.Height)
	for y := 0; y < src.Height; y++ {
		for x := 0; x < src.Width; x++ {
			sx := max(x-dx, 0)
			copy(out.Pix[(y*src.Width+x)*3:][:3], src.Pix[(y*src.Width+sx)*3:][:3])
		}
	}
	return out
}

func TestPhotometricError(t *testing.T) {
	previous := &codec.Frame{}
	if err := codec.ReadPNG(filepath.Join("../../shared/data/endo/segcol/Seq_003_35920/frames", "frame_0000.png"), previous); err != nil {
		t.Fatalf("%v: the shared endoscopy data is missing", err)
	}
	current := shiftFrame(previous, 4)

	var d DriftMeter
	defer d.Close()

	// The flow from current to previous points 4 pixels left.
	flow := NewFlowField(current.Width, current.Height)
	defer flow.Close()
	flow.Fill(-4, 0)
	aligned, err := d.PhotometricError(current, previous, flow)
	if err != nil {
		t.Fatal(err)
	}

	flow.Fill(0, 0)
	unaligned, err := d.PhotometricError(current, previous, flow)
	if err != nil {
		t.Fatal(err)
	}

	other := &codec.Frame{}
	if err := codec.ReadPNG(filepath.Join("../../shared/data/endo/segcol/Seq_015_42000/frames", "frame_0000.png"), other); err != nil {
		t.Fatal(err)
	}
	cut, err := d.PhotometricError(current, other, flow)
	if err != nil {
		t.Fatal(err)
	}

	t.Logf("photometric error: aligned %.2f, unaligned %.2f, scene cut %.2f", aligned, unaligned, cut)
	if aligned > 1 {
		t.Errorf("aligned error %.2f, expected below 1 grey level", aligned)
	}
	if unaligned <= aligned {
		t.Errorf("unaligned error %.2f not above aligned %.2f", unaligned, aligned)
	}
	if cut < 15 {
		t.Errorf("scene cut error %.2f, expected at least 15", cut)
	}

	small := codec.NewFrame(32, 32)
	if _, err := d.PhotometricError(small, previous, flow); err == nil {
		t.Error("frame 32x32 with a 640x480 flow: no error")
	}
}

func TestInconsistency(t *testing.T) {
	forward, backward := NewFlowField(64, 48), NewFlowField(64, 48)
	defer forward.Close()
	defer backward.Close()

	mask := image.NewGray(image.Rect(0, 0, 64, 48))
	for y := 10; y < 30; y++ {
		for x := 10; x < 30; x++ {
			mask.Pix[y*64+x] = 255
		}
	}

	var d DriftMeter
	defer d.Close()

	forward.Fill(3, 0)
	backward.Fill(-3, 0)
	agree, err := d.Inconsistency(forward, backward, mask, 1)
	if err != nil {
		t.Fatal(err)
	}
	if agree != 0 {
		t.Errorf("opposite flows: inconsistency %.3f, expected 0", agree)
	}

	backward.Fill(3, 0)
	disagree, err := d.Inconsistency(forward, backward, mask, 1)
	if err != nil {
		t.Fatal(err)
	}
	if disagree != 1 {
		t.Errorf("equal flows: inconsistency %.3f, expected 1", disagree)
	}

	empty := image.NewGray(image.Rect(0, 0, 64, 48))
	if v, err := d.Inconsistency(forward, backward, empty, 1); err != nil || v != 0 {
		t.Errorf("empty mask: %v, %v; expected 0, nil", v, err)
	}
}
