package trainer

import (
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/rs/zerolog/log"

	"github.com/medvseg/medvseg/segment"
)

// FrameScore is the score of one predicted mask against its ground truth.
type FrameScore struct {
	// Frame is the file name of the ground-truth mask.
	Frame  string `json:"frame"`
	Number int    `json:"number"`
	Scores
}

// Scores are the segmentation measures of one frame, or their means.
type Scores struct {
	Dice      float64 `json:"dice"`
	IoU       float64 `json:"iou"`
	BoundaryF float64 `json:"boundary_f"`
	// BoundaryPrecision and BoundaryRecall are the two halves of BoundaryF.
	BoundaryPrecision float64 `json:"boundary_precision"`
	BoundaryRecall    float64 `json:"boundary_recall"`
}

// Evaluation is the result of Evaluate.
type Evaluation struct {
	Pred string `json:"pred"`
	GT   string `json:"gt"`
	// BoundaryTolerance is the boundary F tolerance, as a fraction of the
	// image diagonal.
	BoundaryTolerance float64 `json:"boundary_tolerance"`
	// Frames are the scores of the frames with both masks, by frame number.
	Frames []FrameScore `json:"frames"`
	// Mean is the mean of each measure over Frames.
	Mean Scores `json:"mean"`
	// MissingPred lists the numbers of ground-truth frames without a prediction.
	MissingPred []int `json:"missing_pred,omitempty"`
	// UnmatchedPred counts predictions without ground truth.
	UnmatchedPred int `json:"unmatched_pred,omitempty"`
}

// Evaluate scores the masks of predDir against those of gtDir, matched by
// the frame number in their names (codec.FrameNumber): Dice, IoU and the
// DAVIS boundary F-score (segment.BoundaryF with
// segment.DAVISBoundaryTolerance) per frame, and their means. Masks of any
// colour model are binarised at > 127. Frames with only one of the two
// masks are left out of the means, listed in the result and logged once.
// No matching frame, and a pair of masks of different sizes, are errors.
func Evaluate(predDir, gtDir string) (*Evaluation, error) {
	preds, err := segment.ListMasks(predDir)
	if err != nil {
		return nil, fmt.Errorf("predicted masks: %w", err)
	}
	gts, err := segment.ListMasks(gtDir)
	if err != nil {
		return nil, fmt.Errorf("ground-truth masks: %w", err)
	}
	predByNumber := map[int]string{}
	for _, p := range preds {
		predByNumber[p.Number] = p.Path
	}

	e := &Evaluation{Pred: predDir, GT: gtDir, BoundaryTolerance: segment.DAVISBoundaryTolerance}
	for _, g := range gts {
		predPath, ok := predByNumber[g.Number]
		if !ok {
			e.MissingPred = append(e.MissingPred, g.Number)
			continue
		}
		delete(predByNumber, g.Number)
		score, err := scoreMasks(predPath, g.Path)
		if err != nil {
			return nil, err
		}
		e.Frames = append(e.Frames, FrameScore{Frame: filepath.Base(g.Path), Number: g.Number, Scores: score})
	}
	e.UnmatchedPred = len(predByNumber)

	if len(e.Frames) == 0 {
		return nil, fmt.Errorf("no predicted mask in %q has the frame number of a ground-truth mask in %q (%d to %d): masks are matched by the number in their names",
			predDir, gtDir, gts[0].Number, gts[len(gts)-1].Number)
	}
	if len(e.MissingPred) > 0 || e.UnmatchedPred > 0 {
		log.Warn().Int("missing_pred", len(e.MissingPred)).Int("unmatched_pred", e.UnmatchedPred).
			Msg("some frames have only a prediction or only ground truth: they are left out of the scores")
	}

	e.computeMean()
	return e, nil
}

// computeMean sets e.Mean to the mean of each measure over e.Frames, or
// zeros when there are none.
func (e *Evaluation) computeMean() {
	e.Mean = Scores{}
	if len(e.Frames) == 0 {
		return
	}
	for _, f := range e.Frames {
		e.Mean.Dice += f.Dice
		e.Mean.IoU += f.IoU
		e.Mean.BoundaryF += f.BoundaryF
		e.Mean.BoundaryPrecision += f.BoundaryPrecision
		e.Mean.BoundaryRecall += f.BoundaryRecall
	}
	n := float64(len(e.Frames))
	e.Mean.Dice /= n
	e.Mean.IoU /= n
	e.Mean.BoundaryF /= n
	e.Mean.BoundaryPrecision /= n
	e.Mean.BoundaryRecall /= n
}

// WriteJSON writes e as indented JSON to path through a temporary file, so
// an earlier file stays intact when writing fails.
func (e *Evaluation) WriteJSON(path string) error {
	data, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, data)
}

// scoreMasks reads a predicted and a ground-truth mask and scores them.
func scoreMasks(predPath, gtPath string) (Scores, error) {
	pred, _, err := segment.ReadMask(predPath)
	if err != nil {
		return Scores{}, err
	}
	gt, _, err := segment.ReadMask(gtPath)
	if err != nil {
		return Scores{}, err
	}
	pw, ph := pred.Rect.Dx(), pred.Rect.Dy()
	gw, gh := gt.Rect.Dx(), gt.Rect.Dy()
	if pw != gw || ph != gh {
		return Scores{}, fmt.Errorf("predicted mask %q is %dx%d but ground truth %q is %dx%d: predict at the ground-truth size",
			predPath, pw, ph, gtPath, gw, gh)
	}

	var s Scores
	if s.Dice, err = segment.Dice(pred, gt); err != nil {
		return Scores{}, err
	}
	if s.IoU, err = segment.IoU(pred, gt); err != nil {
		return Scores{}, err
	}
	boundary, err := segment.BoundaryF(pred, gt, segment.DAVISBoundaryTolerance)
	if err != nil {
		return Scores{}, err
	}
	s.BoundaryF, s.BoundaryPrecision, s.BoundaryRecall = boundary.F, boundary.Precision, boundary.Recall
	return s, nil
}
