package segment

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"unsafe"

	"gocv.io/x/gocv"
)

// Warper warps masks, probability maps and flow fields by a flow field with
// cv::remap. It keeps the sampling grid and scratch Mats between calls, so
// repeated calls at one size allocate no pixel buffers, only the Mat headers
// that wrap the caller's images. The zero value is ready for use. A Warper
// is not safe for concurrent use.
//
// All warps are backward warps: the output is defined on the flow's own
// grid, and output pixel x takes the input's value at x + flow(x). Warping
// an image of frame b by the flow from a to b gives it aligned with frame a.
// Positions outside the input take the nearest edge pixel
// (BORDER_REPLICATE), so a tool that crosses the frame edge stays attached
// to it.
type Warper struct {
	grid   gocv.Mat // CV_32FC2, pixel coordinates (x, y)
	coords gocv.Mat // CV_32FC2, grid + flow: where each output pixel samples
	noMap  gocv.Mat // remap's second map, unused with CV_32FC2 coordinates

	warped  gocv.Mat // CV_32FC2 scratch: a flow warped by another
	sum     gocv.Mat // CV_32FC2 scratch: forward + warped backward flow
	channel [2]gocv.Mat
	length  gocv.Mat
	inside  gocv.Mat
}

// NewWarper returns an empty Warper. The zero value works the same.
func NewWarper() *Warper {
	return &Warper{}
}

// WarpMask backward-warps the binary mask src (foreground > 127) by flow
// into dst, resizing dst to the flow size. It samples src bilinearly and
// thresholds at 127, so dst is 0 or 255 and a boundary moved by a fraction
// of a pixel is rounded to the nearest pixel. src must have the flow's size,
// and dst must not share memory with src.
func (w *Warper) WarpMask(src *image.Gray, flow *FlowField, dst *image.Gray) error {
	if err := checkFlow(flow); err != nil {
		return fmt.Errorf("warp mask: %w", err)
	}
	width, height := src.Rect.Dx(), src.Rect.Dy()
	if width != flow.Width() || height != flow.Height() {
		return fmt.Errorf("warp mask: mask %dx%d does not match flow %s", width, height, flow.size())
	}
	if dst == src || sharesMemory(src.Pix, dst.Pix) {
		return errors.New("warp mask: dst shares memory with src: pass a separate mask")
	}

	srcView, err := grayView(src)
	if err != nil {
		return fmt.Errorf("warp mask: %w", err)
	}
	defer srcView.Close()

	resizeGray(dst, width, height)
	dstView, err := grayView(dst)
	if err != nil {
		return fmt.Errorf("warp mask: %w", err)
	}
	defer dstView.Close()

	w.sampleCoords(flow)
	gocv.Remap(srcView, &dstView, &w.coords, &w.noMap, gocv.InterpolationLinear, gocv.BorderReplicate, color.RGBA{})
	gocv.Threshold(dstView, &dstView, 127, 255, gocv.ThresholdBinary)
	return nil
}

// WarpMap backward-warps the map src by flow with bilinear interpolation
// into dst, resizing dst to the flow size. src must have the flow's size,
// and dst must not share memory with src.
func (w *Warper) WarpMap(src *Map, flow *FlowField, dst *Map) error {
	if err := checkFlow(flow); err != nil {
		return fmt.Errorf("warp map: %w", err)
	}
	if src.Width != flow.Width() || src.Height != flow.Height() {
		return fmt.Errorf("warp map: map %dx%d does not match flow %s", src.Width, src.Height, flow.size())
	}
	if dst == src || sharesMemory(float32Bytes(src.Pix), float32Bytes(dst.Pix)) {
		return errors.New("warp map: dst shares memory with src: pass a separate map")
	}

	srcView, err := src.matView()
	if err != nil {
		return fmt.Errorf("warp map: %w", err)
	}
	defer srcView.Close()

	dst.Resize(src.Width, src.Height)
	dstView, err := dst.matView()
	if err != nil {
		return fmt.Errorf("warp map: %w", err)
	}
	defer dstView.Close()

	w.sampleCoords(flow)
	gocv.Remap(srcView, &dstView, &w.coords, &w.noMap, gocv.InterpolationLinear, gocv.BorderReplicate, color.RGBA{})
	return nil
}

// Compose writes into ac the flow from frame a to frame c, given the flow
// ab from a to b and the flow bc from b to c, both of one size:
// ac(x) = ab(x) + bc(x + ab(x)), with bc sampled bilinearly. Backward
// warping an image of c by ac then matches warping it by bc and then by ab,
// up to interpolation. ac may be ab or bc.
func (w *Warper) Compose(ab, bc, ac *FlowField) error {
	if err := checkFlowPair(ab, bc); err != nil {
		return fmt.Errorf("compose flows: %w", err)
	}

	w.sampleCoords(ab)
	w.warpFlow(bc)
	ac.Resize(ab.Width(), ab.Height())
	gocv.Add(ab.mat, w.warped, &ac.mat)
	return nil
}

// warpFlow backward-warps flow f by the current coords into w.warped.
func (w *Warper) warpFlow(f *FlowField) {
	ensureMat(&w.warped, f.Width(), f.Height(), gocv.MatTypeCV32FC2)
	gocv.Remap(f.mat, &w.warped, &w.coords, &w.noMap, gocv.InterpolationLinear, gocv.BorderReplicate, color.RGBA{})
}

// sampleCoords sets w.coords to grid + flow, the position that each output
// pixel samples.
func (w *Warper) sampleCoords(flow *FlowField) {
	width, height := flow.Width(), flow.Height()
	if w.grid.Ptr() == nil || w.grid.Cols() != width || w.grid.Rows() != height {
		w.makeGrid(width, height)
	}
	if w.noMap.Ptr() == nil {
		w.noMap = gocv.NewMat()
	}
	ensureMat(&w.coords, width, height, gocv.MatTypeCV32FC2)
	gocv.Add(w.grid, flow.mat, &w.coords)
}

// makeGrid fills w.grid with the coordinates (x, y) of every pixel. OpenCV
// has no meshgrid, so it is written here, once per size.
func (w *Warper) makeGrid(width, height int) {
	ensureMat(&w.grid, width, height, gocv.MatTypeCV32FC2)
	v, err := w.grid.DataPtrFloat32()
	if err != nil {
		panic(err) // Unreachable: a new CV_32FC2 Mat is continuous.
	}
	for y := 0; y < height; y++ {
		row := v[2*y*width : 2*(y+1)*width]
		for x := 0; x < width; x++ {
			row[2*x] = float32(x)
			row[2*x+1] = float32(y)
		}
	}
}

// Close releases the Mats. Calling it again does nothing, and the Warper
// stays usable.
func (w *Warper) Close() error {
	for _, m := range []*gocv.Mat{&w.grid, &w.coords, &w.noMap, &w.warped, &w.sum,
		&w.channel[0], &w.channel[1], &w.length, &w.inside} {
		closeMat(m)
	}
	return nil
}

func checkFlow(f *FlowField) error {
	if f.Width() == 0 || f.Height() == 0 {
		return fmt.Errorf("empty flow %s", f.size())
	}
	return nil
}

func checkFlowPair(a, b *FlowField) error {
	if err := checkFlow(a); err != nil {
		return err
	}
	if a.Width() != b.Width() || a.Height() != b.Height() {
		return fmt.Errorf("flow %s does not match flow %s", b.size(), a.size())
	}
	return nil
}

// resizeGray makes img a packed width x height image at the origin, reusing
// its buffer when it is large enough.
func resizeGray(img *image.Gray, width, height int) {
	n := width * height
	if cap(img.Pix) < n {
		img.Pix = make([]byte, n)
	}
	img.Pix = img.Pix[:n]
	img.Stride = width
	img.Rect = image.Rect(0, 0, width, height)
}

// sharesMemory reports whether a and b overlap.
func sharesMemory(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	a0, a1 := uintptr(unsafe.Pointer(&a[0])), uintptr(unsafe.Pointer(&a[len(a)-1]))
	b0, b1 := uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&b[len(b)-1]))
	return a0 <= b1 && b0 <= a1
}
