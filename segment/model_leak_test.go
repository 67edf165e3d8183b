//go:build matprofile

package segment_test

import (
	"image"
	"strings"
	"testing"

	"gocv.io/x/gocv"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/segment"
)

// TestModelClosesEveryMat checks that a model's OpenCV buffers and per-call
// views are all closed by the end of Close. Run it with
// `go test -tags matprofile ./segment/`.
func TestModelClosesEveryMat(t *testing.T) {
	loadRuntime(t)
	path := writeModel(t, colourRule(t, 64, 64))
	before := gocv.MatProfile.Count()

	m, err := segment.LoadModel(path, segment.ModelOptions{
		Device:      segment.DeviceCPU,
		Postprocess: segment.PostprocessOptions{OpeningRadius: 1, ClosingRadius: 1, MinComponentArea: 10},
	})
	if err != nil {
		t.Fatal(err)
	}

	frames := []*codec.Frame{codec.NewFrame(96, 80), codec.NewFrame(64, 64)}
	if err := m.Predict(frames, make([]*segment.Map, 2), make([]*image.Gray, 2)); err != nil {
		t.Fatal(err)
	}
	if err := m.Logits(frames, make([]*segment.Map, 2)); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	if after := gocv.MatProfile.Count(); after != before {
		var b strings.Builder
		gocv.MatProfile.WriteTo(&b, 1)
		t.Errorf("%d Mats open after Close, %d before LoadModel:\n%s", after, before, b.String())
	}
}
