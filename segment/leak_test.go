//go:build matprofile

package segment

import (
	"image"
	"strings"
	"testing"

	"gocv.io/x/gocv"
)

// TestOperationsCloseEveryMat runs every flow, warp, metric and overlay
// operation and checks that gocv's Mat profile, which counts open Mats, is
// back where it started. Run it with `go test -tags matprofile ./segment/`.
func TestOperationsCloseEveryMat(t *testing.T) {
	pairs := segColPairs(t, "Seq_015_42000")[:2]
	before := gocv.MatProfile.Count()

	var w Warper
	var flow, back, composed FlowField
	var warped, consistent image.Gray
	var warpedMap Map
	for _, method := range FlowMethods {
		for _, scale := range []float64{1, 0.5} {
			est, err := NewFlowEstimator(FlowOptions{Method: method, Scale: scale})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range pairs {
				if err := est.Compute(p.next.frame, p.prev.frame, &flow); err != nil {
					t.Fatal(err)
				}
				if err := est.Compute(p.prev.frame, p.next.frame, &back); err != nil {
					t.Fatal(err)
				}
			}
			est.Close()
		}
	}

	p := pairs[0]
	prob := NewMap(p.prev.frame.Width, p.prev.frame.Height)
	steps := []error{
		w.WarpMask(p.prev.mask, &flow, &warped),
		w.WarpMap(prob, &flow, &warpedMap),
		w.Compose(&flow, &back, &composed),
		w.Consistency(&flow, &back, 1, &consistent),
	}
	_, err := Dice(&warped, p.next.mask)
	steps = append(steps, err)
	_, err = BoundaryF(&warped, p.next.mask, DAVISBoundaryTolerance)
	steps = append(steps, err)

	overlay, err := NewOverlay(DefaultOverlayOptions)
	if err != nil {
		t.Fatal(err)
	}
	steps = append(steps, overlay.Draw(p.next.frame, &warped))
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}

	overlay.Close()
	w.Close()
	flow.Close()
	back.Close()
	composed.Close()

	if after := gocv.MatProfile.Count(); after != before {
		var b strings.Builder
		gocv.MatProfile.WriteTo(&b, 1)
		t.Errorf("%d Mats open after closing everything, expected %d:\n%s", after, before, b.String())
	}
}
