package trainer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rs/zerolog/log"

	"github.com/medvseg/medvseg/segment"
)

// PipelineOptions configures RunPipeline. Exactly one of Video and Data
// gives the frames.
type PipelineOptions struct {
	// Out is the run folder.
	Out string
	// Video is the video to extract the frames from, named 0001.png ...
	Video string
	// Data is a clip folder with frames/NAME.png and masks/NAME.png.
	// TODO: a root of several clip folders is rejected (ClipFolders names
	// the clips to pick from), although Train itself accepts such a root.
	Data string
	// Seeds is the folder of seed masks, matched to frames by the number in
	// their names. With Data, "" means Data/masks.
	Seeds string
	// SeedFrames restricts the seeds to these frame numbers; nil takes
	// every mask of the seed folder.
	SeedFrames []int
	// GT is a folder of ground-truth masks, matched to frames by number.
	// With Data, "" means Data/masks. Seed frames are left out of every
	// score, so the student's scores are on frames it never saw a
	// hand-drawn mask of.
	GT string
	// NoGT skips the evaluation even when Data has masks.
	NoGT bool

	Extract   ExtractOptions
	Propagate PropagateOptions
	Filter    FilterOptions
	// Train sets the training; its Data, Out, Resume and Progress are set
	// by the pipeline.
	Train TrainOptions
	// Threshold is the probability above which the exported model counts a
	// pixel as lesion; 0 means 0.5.
	Threshold float64

	// RuntimeLibrary is the ONNX Runtime library, as for segment.LibraryPath.
	RuntimeLibrary string
	// Device is the device of the student in the render stage; "" means auto.
	Device segment.Device
	// Version is the medvseg version recorded in the model's provenance.
	Version string

	// Progress, if not nil, is called as each stage advances.
	Progress func(stage string, done, total int)
}

// Stage names, in the order RunPipeline runs them.
const (
	StageExtract   = "extract"
	StagePropagate = "propagate"
	StageFilter    = "filter"
	StageTrain     = "train"
	StageExport    = "export"
	StageRender    = "render"
	StageEval      = "eval"
	StageReport    = "report"
)

// StageResult is the outcome of one stage of a pipeline run.
type StageResult struct {
	Stage string `json:"stage"`
	// Skipped is set when the run folder already held the stage's output
	// for the same inputs and options.
	Skipped bool    `json:"skipped"`
	Seconds float64 `json:"seconds"`
}

// PipelineResult is the outcome of RunPipeline: each stage and the report.
type PipelineResult struct {
	Stages []StageResult
	Report *Report
}

// Files of the run folder.
const (
	modelName   = "model.onnx"
	overlayName = "overlay.mp4"
	sourceName  = "source.json"
)

// RunPipeline runs extract, propagate, filter, train, export, render,
// eval and report into the run folder o.Out.
//
// Each stage records a fingerprint of its inputs and options in
// RUN/stages.json when it finishes, and a stage whose fingerprint matches
// is skipped. Each fingerprint includes the one of the stage before, so a
// changed input or option reruns its stage and every stage after it. An
// interrupted training run continues from RUN/checkpoints/last when the
// training fingerprint is unchanged. Cancelling ctx stops the current
// stage, and that stage's earlier outputs stay as they were.
func RunPipeline(ctx context.Context, o PipelineOptions) (*PipelineResult, error) {
	p, err := newPipeline(o)
	if err != nil {
		return nil, err
	}

	stages := []struct {
		name string
		run  func(context.Context) error
	}{
		{StageExtract, p.extract},
		{StagePropagate, p.propagate},
		{StageFilter, p.filter},
		{StageTrain, p.train},
		{StageExport, p.export},
		{StageRender, p.render},
		{StageEval, p.eval},
	}
	for _, s := range stages {
		if err := p.runStage(ctx, s.name, s.run); err != nil {
			return p.result, err
		}
	}

	start := time.Now()
	report, err := p.writeReport()
	if err != nil {
		return p.result, err
	}
	p.result.Report = report
	p.stageDone(StageReport, false, time.Since(start).Seconds())
	return p.result, nil
}

// pipeline is one RunPipeline call.
type pipeline struct {
	options PipelineOptions
	log     *stageLog
	result  *PipelineResult

	// fingerprint is the fingerprint of the stage that ran last.
	fingerprint string
}

func newPipeline(o PipelineOptions) (*pipeline, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, fmt.Errorf("create run folder %q: %w; choose an --out you can write to", o.Out, err)
	}
	stages, err := openStageLog(o.Out)
	if err != nil {
		return nil, err
	}
	return &pipeline{options: o, log: stages, result: &PipelineResult{}}, nil
}

func (o PipelineOptions) validate() error {
	if o.Out == "" {
		return errors.New("no run folder: name one with --out")
	}
	if (o.Video == "") == (o.Data == "") {
		return errors.New("give exactly one of --video (a video to extract frames from) or --data (a clip folder with frames/ and masks/)")
	}
	if o.Video != "" && o.Seeds == "" {
		return errors.New("--seeds is required with --video: name the folder of seed masks (PNG, named by frame number)")
	}
	if o.Data != "" && o.Seeds == "" && len(o.SeedFrames) == 0 {
		return fmt.Errorf("with --data %q, give --seed-frames (such as 1) to take seeds from its masks/, or --seeds DIR; "+
			"the masks of the other frames are the ground truth", o.Data)
	}
	if o.Propagate.Progress != nil || o.Filter.Progress != nil || o.Train.Progress != nil {
		return errors.New("set PipelineOptions.Progress, not the progress of a stage's options")
	}
	if err := o.Filter.validate(); err != nil {
		return err
	}
	return nil
}

// runStage runs one stage unless its fingerprint shows that the run folder
// already has its output.
func (p *pipeline) runStage(ctx context.Context, stage string, run func(context.Context) error) error {
	fingerprint, err := p.stageFingerprint(stage)
	if err != nil {
		return err
	}
	p.fingerprint = fingerprint

	if p.log.done(stage, fingerprint) && p.outputsExist(stage) {
		p.stageDone(stage, true, 0)
		return nil
	}

	start := time.Now()
	if err := run(ctx); err != nil {
		if ctx.Err() != nil {
			// The stage's own message may suggest its own command's flags.
			return fmt.Errorf("stopped in the %s stage: %w; rerun with the same run folder to resume", stage, ctx.Err())
		}
		return fmt.Errorf("%s stage: %w", stage, err)
	}
	seconds := time.Since(start).Seconds()
	if err := p.log.finish(stage, fingerprint, seconds); err != nil {
		return err
	}
	p.stageDone(stage, false, seconds)
	return nil
}

func (p *pipeline) stageDone(stage string, skipped bool, seconds float64) {
	p.result.Stages = append(p.result.Stages, StageResult{Stage: stage, Skipped: skipped, Seconds: seconds})
	event := log.Info().Str("stage", stage).Bool("skipped", skipped).Float64("seconds", seconds)
	if skipped {
		event.Msg("stage output is up to date")
		return
	}
	event.Msg("stage finished")
}

// outputsExist reports whether the files a stage writes are all there, so
// a run folder edited by hand reruns the stage.
func (p *pipeline) outputsExist(stage string) bool {
	for _, path := range stageOutputs[stage] {
		if !fileExists(filepath.Join(p.options.Out, path)) {
			return false
		}
	}
	return true
}

// stageOutputs are the files whose absence reruns a stage.
var stageOutputs = map[string][]string{
	StageExtract:   {"frames", "seeds", sourceName},
	StagePropagate: {filepath.Join("pseudo", "masks"), filepath.Join("pseudo", "propagation.json")},
	StageFilter:    {filepath.Join("filtered", "filter.json"), filepath.Join("filtered", "masks"), filepath.Join("pseudo", "dropped")},
	StageTrain:     {filepath.Join(checkpointsDir, bestName), historyName},
	StageExport:    {modelName},
	StageRender:    {overlayName, masksFolderName},
	StageEval:      {evalName},
}

func (p *pipeline) progress(stage string, done, total int) {
	if p.options.Progress != nil {
		p.options.Progress(stage, done, total)
	}
}

func (p *pipeline) path(elem ...string) string {
	return filepath.Join(append([]string{p.options.Out}, elem...)...)
}
