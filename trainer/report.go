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

// eval scores the pseudo-labels, the filtered pseudo-labels and the
// student's masks of clip c against the ground truth, leaving out the seed
// frames.
func (p *pipeline) eval(ctx context.Context, c *runClip) error {
	gt, err := p.groundTruth(c)
	if err != nil {
		return err
	}
	source, err := readRunSource(c.dir)
	if err != nil {
		return err
	}
	result := RunEvaluation{GT: gt, SeedFrames: source.Seeds}

	if gt != "" {
		for _, e := range []struct {
			dir string
			dst **Evaluation
		}{
			{c.path("pseudo", "masks"), &result.Pseudo},
			{c.path("filtered", "masks"), &result.Filtered},
			{c.path(masksFolderName), &result.Student},
		} {
			evaluation, err := evaluateHeldOut(e.dir, gt, source.Seeds)
			if err != nil {
				return err
			}
			*e.dst = evaluation
		}
		event := log.Info().Str("stage", StageEval).Str("gt", gt)
		if c.name != "" {
			event = event.Str("clip", c.name)
		}
		if result.Student != nil {
			event = event.Int("frames", len(result.Student.Frames)).Float64("student_dice", result.Student.Mean.Dice)
		}
		if result.Pseudo != nil {
			event = event.Float64("pseudo_iou", result.Pseudo.Mean.IoU)
		}
		event.Msg("scored against ground truth")
	}

	data, err := json.MarshalIndent(result, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(c.path(evalName), append(data, '\n'))
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

// Report is RUN/report.json, the summary of a pipeline run. Under a root
// of clips, Propagation, Filtered and Student pool every frame of every
// clip, so a long clip weighs more than a short one, and Clips has the
// figures of each clip.
type Report struct {
	Run     string    `json:"run"`
	Created time.Time `json:"created"`
	// Source is where the frames and seeds came from. Under a root of
	// clips, Frames counts the frames of all clips, and Seeds is the
	// --seed-frames list that applies to every clip (nil with --seeds).
	Source runSource `json:"source"`
	// GT is the folder of ground-truth masks, "" when there is none or
	// when each clip has its own.
	GT          string            `json:"gt,omitempty"`
	Propagation PropagationReport `json:"propagation"`
	Filtered    FilteredReport    `json:"filtered"`
	Training    TrainingReport    `json:"training"`
	Student     StudentReport     `json:"student"`
	// Clips has one entry per clip under a root of clips, in name order.
	Clips []ClipReport `json:"clips,omitempty"`
	// Seconds is each stage's duration when it last ran, by stage name;
	// a per-clip stage under a root of clips is named "<clip>/<stage>".
	Seconds map[string]float64 `json:"seconds"`
}

// ClipReport summarises one clip of a root of clips.
type ClipReport struct {
	Name string `json:"name"`
	// Dir is the clip's folder in the run, relative to the run folder.
	Dir    string    `json:"dir"`
	Source runSource `json:"source"`
	// GT is the clip's folder of ground-truth masks, "" when there is none.
	GT          string            `json:"gt,omitempty"`
	Propagation PropagationReport `json:"propagation"`
	Filtered    FilteredReport    `json:"filtered"`
	// TrainFrames and ValidationFrames are the clip's filtered frames that
	// went to training and to validation.
	TrainFrames      int        `json:"train_frames"`
	ValidationFrames int        `json:"validation_frames"`
	Student          MeanScores `json:"student"`
	// Overlay is the clip's overlay video, relative to the run folder.
	Overlay string `json:"overlay"`
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
	clips   []*clipInputs
	history *TrainHistory
}

// clipInputs are the records of the per-clip stages of one clip.
type clipInputs struct {
	clip        *runClip
	source      *runSource
	propagation *Propagation
	filter      *FilterReport
	evaluation  *RunEvaluation
}

func (p *pipeline) readReportInputs() (*reportInputs, error) {
	var in reportInputs
	var err error
	for _, c := range p.clips {
		clip, err := readClipInputs(c)
		if err != nil {
			return nil, err
		}
		in.clips = append(in.clips, clip)
	}
	if in.history, err = ReadTrainHistory(p.options.Out); err != nil {
		return nil, err
	}
	return &in, nil
}

func readClipInputs(c *runClip) (*clipInputs, error) {
	in := &clipInputs{clip: c}
	var err error
	if in.source, err = readRunSource(c.dir); err != nil {
		return nil, err
	}
	if in.propagation, err = readPropagation(c.dir); err != nil {
		return nil, err
	}
	in.filter = &FilterReport{}
	if err := readRunJSON(c.dir, filepath.Join("filtered", "filter.json"), in.filter); err != nil {
		return nil, err
	}
	in.evaluation = &RunEvaluation{}
	if err := readRunJSON(c.dir, evalName, in.evaluation); err != nil {
		return nil, err
	}
	return in, nil
}

// readRunJSON decodes the file at the path name, relative to dir, a folder
// of the run.
func readRunJSON(dir, name string, v any) error {
	path := filepath.Join(dir, name)
	data, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(data, v)
	}
	if err != nil {
		return fmt.Errorf("read %q: %w; delete the run folder's %s to rerun every stage", path, err, stagesName)
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
	r := &Report{Run: abs, Created: time.Now().UTC(), Seconds: map[string]float64{}}

	h := in.history
	r.Training = TrainingReport{Epochs: len(h.Epochs), BestEpoch: h.BestEpoch, BestValidationDice: h.BestDice,
		TrainFrames: h.TrainFrames, ValidationFrames: h.ValidationFrames}
	if len(h.Epochs) > 0 {
		r.Training.FinalTrainLoss = h.Epochs[len(h.Epochs)-1].TrainLoss
	}
	for stage, record := range p.log.Stages {
		r.Seconds[stage] = record.Seconds
	}

	if !p.multiClip() {
		clip := summariseClip(in.clips[0], h)
		r.Source, r.GT = clip.Source, clip.GT
		r.Propagation, r.Filtered = clip.Propagation, clip.Filtered
		r.Student = StudentReport{Model: modelName, MeanScores: clip.Student}
		return r
	}

	r.Source = runSource{Data: p.options.Data, FrameRate: in.clips[0].source.FrameRate, Seeds: p.options.SeedFrames}
	r.GT = p.options.GT
	var pseudo, filtered, student []*Evaluation
	for _, c := range in.clips {
		clip := summariseClip(c, h)
		r.Clips = append(r.Clips, clip)
		r.Source.Frames += clip.Source.Frames
		r.Propagation.Frames += clip.Propagation.Frames
		r.Propagation.EmptyFrames += clip.Propagation.EmptyFrames
		r.Filtered.Kept += clip.Filtered.Kept
		r.Filtered.Dropped += clip.Filtered.Dropped
		pseudo = append(pseudo, c.evaluation.Pseudo)
		filtered = append(filtered, c.evaluation.Filtered)
		student = append(student, c.evaluation.Student)
	}
	r.Propagation.MeanScores = meanScores(poolEvaluations(pseudo))
	r.Filtered.MeanScores = meanScores(poolEvaluations(filtered))
	r.Student = StudentReport{Model: modelName, MeanScores: meanScores(poolEvaluations(student))}
	return r
}

// summariseClip summarises the per-clip stages of one clip and its share
// of the training frames.
func summariseClip(in *clipInputs, h *TrainHistory) ClipReport {
	c := in.clip
	r := ClipReport{Name: c.name, Source: *in.source, GT: in.evaluation.GT,
		Dir: filepath.Join(clipsFolder, c.name), Overlay: filepath.Join(clipsFolder, c.name, overlayName)}
	if c.name == "" {
		r.Dir, r.Overlay = ".", overlayName
	}
	r.Propagation = PropagationReport{Frames: len(in.propagation.Frames),
		EmptyFrames: len(in.propagation.EmptyFrames), MeanScores: meanScores(in.evaluation.Pseudo)}
	r.Filtered = FilteredReport{Kept: in.filter.Kept, Dropped: in.filter.Dropped,
		MeanScores: meanScores(in.evaluation.Filtered)}
	r.Student = meanScores(in.evaluation.Student)

	filtered := c.path("filtered")
	for _, split := range h.Clips {
		if split.Data == filtered {
			r.TrainFrames, r.ValidationFrames = split.TrainFrames, split.ValidationFrames
		}
	}
	return r
}

// poolEvaluations returns the scores of every frame of the evaluations
// and their means, or nil when none has a frame.
func poolEvaluations(evaluations []*Evaluation) *Evaluation {
	pooled := &Evaluation{}
	for _, e := range evaluations {
		if e == nil {
			continue
		}
		pooled.BoundaryTolerance = e.BoundaryTolerance
		pooled.Frames = append(pooled.Frames, e.Frames...)
	}
	if len(pooled.Frames) == 0 {
		return nil
	}
	pooled.computeMean()
	return pooled
}
