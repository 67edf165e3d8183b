package trainer

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/rs/zerolog/log"
)

// evalName is the file in the run folder with the per-frame scores.
const evalName = "eval.json"

// RunEvaluation is RUN/eval.json: the pseudo-labels, the filtered
// pseudo-labels and the student's masks scored against ground truth. Seed
// frames are left out of every score.
type RunEvaluation struct {
	// GT is the folder of ground-truth masks; "" when there is none, and
	// then every score is nil.
	GT         string      `json:"gt"`
	SeedFrames []int       `json:"seed_frames"`
	Pseudo     *Evaluation `json:"pseudo,omitempty"`
	Filtered   *Evaluation `json:"filtered,omitempty"`
	Student    *Evaluation `json:"student,omitempty"`
}

// eval scores RUN/pseudo/masks, RUN/filtered/masks and RUN/student/masks
// against the ground truth, leaving out the seed frames.
func (p *pipeline) eval(ctx context.Context) error {
	gt, err := p.groundTruth()
	if err != nil {
		return err
	}
	source, err := p.readSource()
	if err != nil {
		return err
	}
	result := RunEvaluation{GT: gt, SeedFrames: source.Seeds}

	if gt != "" {
		for _, e := range []struct {
			dir string
			dst **Evaluation
		}{
			{p.path("pseudo", "masks"), &result.Pseudo},
			{p.path("filtered", "masks"), &result.Filtered},
			{p.path(masksFolderName), &result.Student},
		} {
			evaluation, err := evaluateHeldOut(e.dir, gt, source.Seeds)
			if err != nil {
				return err
			}
			*e.dst = evaluation
		}
		log.Info().Str("stage", StageEval).Str("gt", gt).Int("frames", len(result.Student.Frames)).
			Float64("student_dice", result.Student.Mean.Dice).Float64("pseudo_iou", result.Pseudo.Mean.IoU).
			Msg("scored against ground truth")
	}

	data, err := json.MarshalIndent(result, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(p.path(evalName), append(data, '\n'))
}

// evaluateHeldOut scores the masks of predDir against gtDir like Evaluate,
// without the seed frames. It returns nil when only seed frames match.
func evaluateHeldOut(predDir, gtDir string, seeds []int) (*Evaluation, error) {
	e, err := Evaluate(predDir, gtDir)
	if err != nil {
		return nil, err
	}
	e.Frames = slices.DeleteFunc(e.Frames, func(f FrameScore) bool { return slices.Contains(seeds, f.Number) })
	if len(e.Frames) == 0 {
		return nil, nil
	}
	e.computeMean()
	return e, nil
}

// Report is RUN/report.json, the summary of a pipeline run.
type Report struct {
	Run     string    `json:"run"`
	Created time.Time `json:"created"`
	Source  runSource `json:"source"`
	// GT is the folder of ground-truth masks, "" when there is none.
	GT          string            `json:"gt,omitempty"`
	Propagation PropagationReport `json:"propagation"`
	Filtered    FilteredReport    `json:"filtered"`
	Training    TrainingReport    `json:"training"`
	Student     StudentReport     `json:"student"`
	// Seconds is each stage's duration when it last ran, by stage name.
	Seconds map[string]float64 `json:"seconds"`
}

// MeanScores are means over the ground-truth frames that are not seeds;
// they are absent from the JSON without ground truth.
type MeanScores struct {
	// GTFrames is the number of frames scored.
	GTFrames  int      `json:"gt_frames,omitempty"`
	MeanDice  *float64 `json:"mean_dice,omitempty"`
	MeanIoU   *float64 `json:"mean_iou,omitempty"`
	BoundaryF *float64 `json:"mean_boundary_f,omitempty"`
}

// PropagationReport summarises the pseudo-labels.
type PropagationReport struct {
	Frames      int `json:"frames"`
	EmptyFrames int `json:"empty_frames"`
	MeanScores
}

// FilteredReport summarises the filter; its scores cover the kept frames.
type FilteredReport struct {
	Kept    int `json:"kept"`
	Dropped int `json:"dropped"`
	MeanScores
}

// TrainingReport summarises train_history.json.
type TrainingReport struct {
	Epochs             int     `json:"epochs"`
	BestEpoch          int     `json:"best_epoch"`
	BestValidationDice float64 `json:"best_validation_dice"`
	TrainFrames        int     `json:"train_frames"`
	ValidationFrames   int     `json:"validation_frames"`
	FinalTrainLoss     float64 `json:"final_train_loss"`
}

// StudentReport summarises the student's masks on every frame.
type StudentReport struct {
	Model string `json:"model"`
	MeanScores
}

func meanScores(e *Evaluation) MeanScores {
	if e == nil {
		return MeanScores{}
	}
	dice, iou, boundary := e.Mean.Dice, e.Mean.IoU, e.Mean.BoundaryF
	return MeanScores{GTFrames: len(e.Frames), MeanDice: &dice, MeanIoU: &iou, BoundaryF: &boundary}
}

// reportInputs are the records of the earlier stages that the report reads.
type reportInputs struct {
	source      *runSource
	propagation *Propagation
	filter      *FilterReport
	history     *TrainHistory
	evaluation  *RunEvaluation
}

func (p *pipeline) readReportInputs() (*reportInputs, error) {
	var in reportInputs
	var err error
	if in.source, err = p.readSource(); err != nil {
		return nil, err
	}
	if in.propagation, err = readPropagation(p.options.Out); err != nil {
		return nil, err
	}
	in.filter = &FilterReport{}
	if err := p.readJSON(filepath.Join("filtered", "filter.json"), in.filter); err != nil {
		return nil, err
	}
	if in.history, err = ReadTrainHistory(p.options.Out); err != nil {
		return nil, err
	}
	in.evaluation = &RunEvaluation{}
	if err := p.readJSON(evalName, in.evaluation); err != nil {
		return nil, err
	}
	return &in, nil
}

// readJSON decodes the file at the path name, relative to the run folder.
func (p *pipeline) readJSON(name string, v any) error {
	path := p.path(name)
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %q: %w; delete %q to rerun every stage", path, err, p.path(stagesName))
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("read %q: %w; delete %q to rerun every stage", path, err, p.path(stagesName))
	}
	return nil
}

// writeReport writes RUN/report.json, and RUN/report.html with its
// figures in RUN/report/.
func (p *pipeline) writeReport() (*Report, error) {
	in, err := p.readReportInputs()
	if err != nil {
		return nil, err
	}
	report := p.summarise(in)

	data, err := json.MarshalIndent(report, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(p.path("report.json"), append(data, '\n')); err != nil {
		return nil, err
	}
	if err := p.writeHTMLReport(report, in); err != nil {
		return nil, err
	}
	return report, nil
}

func (p *pipeline) summarise(in *reportInputs) *Report {
	abs, err := filepath.Abs(p.options.Out)
	if err != nil {
		abs = p.options.Out
	}
	r := &Report{Run: abs, Created: time.Now().UTC(), Source: *in.source, GT: in.evaluation.GT,
		Seconds: map[string]float64{}}

	r.Propagation = PropagationReport{Frames: len(in.propagation.Frames),
		EmptyFrames: len(in.propagation.EmptyFrames), MeanScores: meanScores(in.evaluation.Pseudo)}
	r.Filtered = FilteredReport{Kept: in.filter.Kept, Dropped: in.filter.Dropped,
		MeanScores: meanScores(in.evaluation.Filtered)}

	h := in.history
	r.Training = TrainingReport{Epochs: len(h.Epochs), BestEpoch: h.BestEpoch, BestValidationDice: h.BestDice,
		TrainFrames: h.TrainFrames, ValidationFrames: h.ValidationFrames}
	if len(h.Epochs) > 0 {
		r.Training.FinalTrainLoss = h.Epochs[len(h.Epochs)-1].TrainLoss
	}
	r.Student = StudentReport{Model: modelName, MeanScores: meanScores(in.evaluation.Student)}

	for stage, record := range p.log.Stages {
		r.Seconds[stage] = record.Seconds
	}
	return r
}
