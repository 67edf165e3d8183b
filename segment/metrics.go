package segment

import (
	"fmt"
	"image"
	"math"

	"gocv.io/x/gocv"
)

// DAVISBoundaryTolerance is the default boundary matching tolerance of the
// DAVIS benchmark, as a fraction of the image diagonal (bound_th in
// measures/f_boundary.m of github.com/davisvideochallenge/davis-matlab).
const DAVISBoundaryTolerance = 0.008

// Dice returns the Dice coefficient 2|A∩B| / (|A|+|B|) of two binary masks
// of one size, with foreground > 127. Two empty masks score 1.
func Dice(a, b *image.Gray) (float64, error) {
	inter, areaA, areaB, err := overlap("dice", a, b)
	if err != nil {
		return 0, err
	}
	if areaA+areaB == 0 {
		return 1, nil
	}
	return 2 * float64(inter) / float64(areaA+areaB), nil
}

// IoU returns the intersection over union |A∩B| / |A∪B| of two binary masks
// of one size, with foreground > 127. Two empty masks score 1.
func IoU(a, b *image.Gray) (float64, error) {
	inter, areaA, areaB, err := overlap("IoU", a, b)
	if err != nil {
		return 0, err
	}
	union := areaA + areaB - inter
	if union == 0 {
		return 1, nil
	}
	return float64(inter) / float64(union), nil
}

// overlap returns the foreground areas of a and b and of their intersection.
func overlap(name string, a, b *image.Gray) (inter, areaA, areaB int, err error) {
	binA, binB, err := binaryPair(name, a, b)
	if err != nil {
		return 0, 0, 0, err
	}
	defer binA.Close()
	defer binB.Close()

	areaA = gocv.CountNonZero(binA)
	areaB = gocv.CountNonZero(binB)
	gocv.BitwiseAnd(binA, binB, &binA)
	return gocv.CountNonZero(binA), areaA, areaB, nil
}

// BoundaryScore is the boundary measure of the DAVIS benchmark for a
// predicted mask against a ground-truth mask.
type BoundaryScore struct {
	// Precision is the fraction of predicted boundary pixels that lie within
	// the tolerance of the ground-truth boundary.
	Precision float64
	// Recall is the fraction of ground-truth boundary pixels that lie within
	// the tolerance of the predicted boundary.
	Recall float64
	// F is the harmonic mean of Precision and Recall, 0 when both are 0.
	F float64
}

// BoundaryF computes the boundary F-score of the DAVIS benchmark of mask
// pred against ground truth gt, both of one size with foreground > 127.
// Boundaries match within a disc of radius ceil(tolerance * image diagonal)
// pixels, where DAVISBoundaryTolerance is the benchmark's value. As in
// DAVIS, a mask with no boundary gets precision or recall 1 and the other 0,
// so F is 0, and when neither mask has one all three are 1. Empty masks
// follow the same rule, so an empty mask against one that fills the image
// scores 0.
//
// NOTE: boundary pixels here are foreground pixels with a background
// 4-neighbour, and the image edge is no boundary. DAVIS's seg2bmap marks
// pixels whose right, lower or lower-right neighbour differs, which puts
// the boundary half a pixel away, so scores can differ slightly.
func BoundaryF(pred, gt *image.Gray, tolerance float64) (BoundaryScore, error) {
	if !(tolerance > 0) || math.IsInf(tolerance, 0) {
		return BoundaryScore{}, fmt.Errorf("boundary F: invalid tolerance %v: must be a positive fraction of the image diagonal, for example %v",
			tolerance, DAVISBoundaryTolerance)
	}

	binPred, binGT, err := binaryPair("boundary F", pred, gt)
	if err != nil {
		return BoundaryScore{}, err
	}
	defer binPred.Close()
	defer binGT.Close()

	// Checked before the boundaries because a mask that fills the whole
	// image has no boundary either.
	areaPred, areaGT := gocv.CountNonZero(binPred), gocv.CountNonZero(binGT)
	if score, ok := emptyBoundaryScore(areaPred, areaGT); ok {
		return score, nil
	}

	boundPred := boundary(binPred)
	defer boundPred.Close()
	boundGT := boundary(binGT)
	defer boundGT.Close()

	nPred := gocv.CountNonZero(boundPred)
	nGT := gocv.CountNonZero(boundGT)
	if score, ok := emptyBoundaryScore(nPred, nGT); ok {
		return score, nil
	}

	width, height := pred.Rect.Dx(), pred.Rect.Dy()
	radius := int(math.Ceil(tolerance * math.Hypot(float64(width), float64(height))))
	disc := discKernel(radius)
	defer disc.Close()

	s := BoundaryScore{
		Precision: matchedFraction(boundPred, boundGT, disc, nPred),
		Recall:    matchedFraction(boundGT, boundPred, disc, nGT),
	}
	if s.Precision+s.Recall > 0 {
		s.F = 2 * s.Precision * s.Recall / (s.Precision + s.Recall)
	}
	return s, nil
}

// emptyBoundaryScore returns the DAVIS score when nPred or nGT, counts of
// foreground or boundary pixels, is zero.
func emptyBoundaryScore(nPred, nGT int) (BoundaryScore, bool) {
	switch {
	case nPred == 0 && nGT == 0:
		return BoundaryScore{Precision: 1, Recall: 1, F: 1}, true
	case nPred == 0:
		return BoundaryScore{Precision: 1, Recall: 0, F: 0}, true
	case nGT == 0:
		return BoundaryScore{Precision: 0, Recall: 1, F: 0}, true
	}
	return BoundaryScore{}, false
}

// matchedFraction returns the fraction of the n pixels of boundary a that
// lie within the structuring element disc of boundary b.
func matchedFraction(a, b, disc gocv.Mat, n int) float64 {
	near := gocv.NewMat()
	defer near.Close()
	gocv.Dilate(b, &near, disc)
	gocv.BitwiseAnd(a, near, &near)
	return float64(gocv.CountNonZero(near)) / float64(n)
}

// discKernel returns the structuring element of DAVIS: the offsets (x, y)
// with x² + y² <= radius². cv::MORPH_ELLIPSE differs from it at the
// diagonals, for example it includes (2, 1) for radius 2.
func discKernel(radius int) gocv.Mat {
	side := 2*radius + 1
	kernel := gocv.NewMatWithSize(side, side, gocv.MatTypeCV8U)
	for y := -radius; y <= radius; y++ {
		for x := -radius; x <= radius; x++ {
			var v uint8
			if x*x+y*y <= radius*radius {
				v = 1
			}
			kernel.SetUCharAt(y+radius, x+radius, v)
		}
	}
	return kernel
}

// boundary returns the foreground pixels of bin (0 or 255) that have a
// background 4-neighbour. cv::erode treats pixels outside the image as
// foreground, so the image edge is no boundary.
func boundary(bin gocv.Mat) gocv.Mat {
	cross := gocv.GetStructuringElement(gocv.MorphCross, image.Pt(3, 3))
	defer cross.Close()

	eroded := gocv.NewMat()
	gocv.Erode(bin, &eroded, cross)
	gocv.Subtract(bin, eroded, &eroded)
	return eroded
}

// binaryPair checks that a and b have one size and returns them thresholded
// to 0 or 255 at > 127, as new Mats that the caller closes.
func binaryPair(name string, a, b *image.Gray) (gocv.Mat, gocv.Mat, error) {
	wa, ha := a.Rect.Dx(), a.Rect.Dy()
	wb, hb := b.Rect.Dx(), b.Rect.Dy()
	if wa != wb || ha != hb {
		return gocv.Mat{}, gocv.Mat{}, fmt.Errorf("%s: mask %dx%d does not match mask %dx%d", name, wb, hb, wa, ha)
	}

	binA, err := binaryMat(a)
	if err != nil {
		return gocv.Mat{}, gocv.Mat{}, fmt.Errorf("%s: %w", name, err)
	}
	binB, err := binaryMat(b)
	if err != nil {
		binA.Close()
		return gocv.Mat{}, gocv.Mat{}, fmt.Errorf("%s: %w", name, err)
	}
	return binA, binB, nil
}

// binaryMat returns mask thresholded at > 127 to 0 or 255 as a new Mat.
func binaryMat(mask *image.Gray) (gocv.Mat, error) {
	view, err := grayView(mask)
	if err != nil {
		return gocv.Mat{}, err
	}
	defer view.Close()

	bin := gocv.NewMat()
	gocv.Threshold(view, &bin, 127, 255, gocv.ThresholdBinary)
	return bin, nil
}
