package trainer

import (
	"fmt"
	"image"
	"image/color"
	"math"
	"math/rand/v2"

	"gocv.io/x/gocv"
)

// InputMean and InputStd normalise the network input per RGB channel after
// scaling to [0,1]: (x - mean) / std. They are ImageNet's statistics, the
// usual convention. Checkpoints store them, and the ONNX export must write
// them as medvseg.mean and medvseg.std.
var (
	InputMean = [3]float32{0.485, 0.456, 0.406}
	InputStd  = [3]float32{0.229, 0.224, 0.225}
)

// augmentation ranges, drawn uniformly per sample.
const (
	maxRotationDegrees = 15
	maxScaleChange     = 0.1  // scale in [0.9, 1.1]
	maxShift           = 0.06 // fraction of the side
	maxContrastChange  = 0.2  // gain in [0.8, 1.2]
	maxBrightnessShift = 0.1  // fraction of 255
	maxHueShift        = 6    // OpenCV hue units, 2 degrees each
	maxSaturation      = 0.2  // saturation gain in [0.8, 1.2]
	blurProbability    = 0.25 // Gaussian blur, kernel 3 or 5
)

// augmenter applies the random training transforms to a frame and its mask.
// Geometric transforms (flips, rotation, scale, shift) act on both the same
// way; photometric ones (brightness, contrast, hue, saturation, blur) on the
// frame only. It reuses its Mats across calls; Close frees them.
type augmenter struct {
	size   int
	affine gocv.Mat
	frame  gocv.Mat
	mask   gocv.Mat
	hsv    gocv.Mat
}

func newAugmenter(size int) *augmenter {
	return &augmenter{
		size:   size,
		affine: gocv.NewMatWithSize(2, 3, gocv.MatTypeCV64F),
		frame:  gocv.NewMat(),
		mask:   gocv.NewMat(),
		hsv:    gocv.NewMat(),
	}
}

func (a *augmenter) Close() {
	a.affine.Close()
	a.frame.Close()
	a.mask.Close()
	a.hsv.Close()
}

// Apply draws a transform from rng, applies it to s and writes the
// normalised RGB planes into input (3 x size x size) and the 0/1 mask into
// mask (size x size).
func (a *augmenter) Apply(rng *rand.Rand, s trainSample, input, mask []float32) error {
	frameSrc, err := gocv.NewMatFromBytes(a.size, a.size, gocv.MatTypeCV8UC3, s.bgr)
	if err != nil {
		return fmt.Errorf("augment %q: %w", s.frame, err)
	}
	defer frameSrc.Close()
	maskSrc, err := gocv.NewMatFromBytes(a.size, a.size, gocv.MatTypeCV8UC1, s.mask)
	if err != nil {
		return fmt.Errorf("augment %q: %w", s.frame, err)
	}
	defer maskSrc.Close()

	a.setAffine(rng)
	size := image.Pt(a.size, a.size)
	gocv.WarpAffineWithParams(frameSrc, &a.frame, a.affine, size, gocv.InterpolationLinear,
		gocv.BorderReflect101, color.RGBA{})
	gocv.WarpAffineWithParams(maskSrc, &a.mask, a.affine, size, gocv.InterpolationLinear,
		gocv.BorderReflect101, color.RGBA{})

	a.adjustColour(rng)

	if rng.Float64() < blurProbability {
		k := 3 + 2*rng.IntN(2)
		gocv.GaussianBlur(a.frame, &a.frame, image.Pt(k, k), 0, 0, gocv.BorderReflect101)
	}

	return a.write(input, mask)
}

// setAffine draws flips, rotation, scale and shift and composes them into
// one 2x3 matrix about the image centre.
func (a *augmenter) setAffine(rng *rand.Rand) {
	flipX, flipY := 1.0, 1.0
	if rng.IntN(2) == 1 {
		flipX = -1
	}
	if rng.IntN(2) == 1 {
		flipY = -1
	}
	angle := (2*rng.Float64() - 1) * maxRotationDegrees * math.Pi / 180
	scale := 1 + (2*rng.Float64()-1)*maxScaleChange
	side := float64(a.size)
	shiftX := (2*rng.Float64() - 1) * maxShift * side
	shiftY := (2*rng.Float64() - 1) * maxShift * side

	// Destination = R*S*F*(source - c) + c + shift, with c the centre in
	// OpenCV's pixel-centre coordinates.
	c := (side - 1) / 2
	cos, sin := scale*math.Cos(angle), scale*math.Sin(angle)
	m := [2][2]float64{{cos * flipX, -sin * flipY}, {sin * flipX, cos * flipY}}
	a.affine.SetDoubleAt(0, 0, m[0][0])
	a.affine.SetDoubleAt(0, 1, m[0][1])
	a.affine.SetDoubleAt(0, 2, c+shiftX-m[0][0]*c-m[0][1]*c)
	a.affine.SetDoubleAt(1, 0, m[1][0])
	a.affine.SetDoubleAt(1, 1, m[1][1])
	a.affine.SetDoubleAt(1, 2, c+shiftY-m[1][0]*c-m[1][1]*c)
}

// adjustColour applies contrast and brightness, then hue and saturation
// changes in OpenCV's 8-bit HSV (hue 0..179).
func (a *augmenter) adjustColour(rng *rand.Rand) {
	gain := 1 + (2*rng.Float64()-1)*maxContrastChange
	offset := (2*rng.Float64() - 1) * maxBrightnessShift * 255
	a.frame.ConvertToWithParams(&a.frame, gocv.MatTypeCV8UC3, float32(gain), float32(offset))

	hueShift := rng.IntN(2*maxHueShift+1) - maxHueShift
	saturation := 1 + (2*rng.Float64()-1)*maxSaturation
	gocv.CvtColor(a.frame, &a.hsv, gocv.ColorBGRToHSV)
	pix, err := a.hsv.DataPtrUint8()
	if err != nil {
		return
	}
	for i := 0; i < len(pix); i += 3 {
		pix[i] = byte((int(pix[i]) + hueShift + 180) % 180)
		pix[i+1] = byte(min(255, float64(pix[i+1])*saturation+0.5))
	}
	gocv.CvtColor(a.hsv, &a.frame, gocv.ColorHSVToBGR)
}

// write converts the current frame and mask to network input.
func (a *augmenter) write(input, mask []float32) error {
	bgr, err := a.frame.DataPtrUint8()
	if err != nil {
		return err
	}
	gray, err := a.mask.DataPtrUint8()
	if err != nil {
		return err
	}
	normalise(bgr, input)
	for i, v := range gray {
		mask[i] = float32(binaryMask(v)) / 255
	}
	return nil
}

// normalise converts packed BGR bytes to planar RGB floats normalised with
// InputMean and InputStd.
func normalise(bgr []byte, input []float32) {
	plane := len(bgr) / 3
	for c := range 3 {
		scale := 1 / (255 * InputStd[c])
		offset := InputMean[c] / InputStd[c]
		out := input[c*plane : (c+1)*plane]
		// RGB channel c is BGR byte 2-c.
		for i := range out {
			out[i] = float32(bgr[3*i+2-c])*scale - offset
		}
	}
}
