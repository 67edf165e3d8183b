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
	// Data is a clip folder with frames/NAME.png and masks/NAME.png, or a
	// root of several such clip folders. Each clip of a root is propagated
	// and filtered on its own, into RUN/clips/<clip>, and the filtered
	// pseudo-labels of all clips train one student.
	Data string
	// Seeds is the folder of seed masks, matched to frames by the number in
	// their names. With Data, "" means each clip's masks folder. Under a
	// root of clips, Seeds holds one folder of seed masks per clip,
	// Seeds/<clip>/.
	Seeds string
	// SeedFrames restricts the seeds to these frame numbers, in every clip;
	// nil takes every mask of the seed folder.
	SeedFrames []int
	// GT is a folder of ground-truth masks, matched to frames by number,
	// with one folder per clip, GT/<clip>/, under a root of clips. With
	// Data, "" means each clip's masks folder. Seed frames are left out of
	// every score, so the student's scores are on frames it never saw a
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

	// Progress, if not nil, is called as each stage advances. Under a root
	// of clips, the stages that run once per clip are named "<clip>/<stage>".
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
	// Clip is the clip of a per-clip stage under a root of clips.
	Clip string `json:"clip,omitempty"`
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
// Under a root of clips (o.Data), extract, propagate and filter run for
// each clip into RUN/clips/<clip>, so optical flow never crosses from one
// clip into another. One training run pools the filtered pseudo-labels of
// every clip, and render and eval then run for each clip again. The report
// gives each clip's scores and the scores pooled over every frame of every
// clip.
//
// Each stage records a fingerprint of its inputs and options in
// RUN/stages.json when it finishes, and a stage whose fingerprint matches
// is skipped. Each fingerprint includes the one of the stage before, so a
// changed input or option reruns its stage and every stage after it;
// training follows every clip's filter stage. An interrupted training run
// continues from RUN/checkpoints/last when the training fingerprint is
// unchanged. Cancelling ctx stops the current stage, and that stage's
// earlier outputs stay as they were.
func RunPipeline(ctx context.Context, o PipelineOptions) (*PipelineResult, error) {
	p, err := newPipeline(o)
	if err != nil {
		return nil, err
	}
	defer p.unlock()

	for _, c := range p.clips {
		for _, s := range []clipStage{{StageExtract, p.extract}, {StagePropagate, p.propagate},
			{StageFilter, p.filter}} {
			if err := p.runClipStage(ctx, c, s); err != nil {
				return p.result, err
			}
		}
	}
	if err := p.runStage(ctx, nil, StageTrain, func(ctx context.Context, _ *runClip) error {
		return p.train(ctx)
	}); err != nil {
		return p.result, err
	}
	if err := p.runStage(ctx, nil, StageExport, func(context.Context, *runClip) error {
		return p.export()
	}); err != nil {
		return p.result, err
	}
	for _, s := range []clipStage{{StageRender, p.render}, {StageEval, p.eval}} {
		for _, c := range p.clips {
			if err := p.runClipStage(ctx, c, s); err != nil {
				return p.result, err
			}
		}
	}

	start := time.Now()
	report, err := p.writeReport()
	if err != nil {
		return p.result, err
	}
	p.result.Report = report
	p.stageDone(nil, StageReport, false, time.Since(start).Seconds())
	return p.result, nil
}

// clipStage is a stage that runs once for each clip.
type clipStage struct {
	name string
	run  func(context.Context, *runClip) error
}

// pipeline is one RunPipeline call.
type pipeline struct {
	options PipelineOptions
	clips   []*runClip
	log     *stageLog
	result  *PipelineResult
	unlock  func() // releases the run folder's lock

	// fingerprint is the fingerprint of the pooled stage (train or export)
	// that ran last.
	fingerprint string
}

func newPipeline(o PipelineOptions) (*pipeline, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	clips, err := pipelineClips(o)
	if err != nil {
		return nil, err
	}
	p := &pipeline{options: o, clips: clips, result: &PipelineResult{}}
	// A clip without a seed mask fails the run before any clip's stages.
	for _, c := range clips {
		_, err := selectSeedFiles(p.seedSource(c))
		if err != nil && c.name != "" && o.Seeds == "" {
			return nil, fmt.Errorf("clip %q: %w; --seed-frames applies to every clip, so for clips numbered differently give --seeds DIR with the seed masks of each clip in DIR/<clip>/",
				c.name, err)
		}
		if err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, fmt.Errorf("create run folder %q: %w; choose an --out you can write to", o.Out, err)
	}
	if p.unlock, err = LockRun(o.Out); err != nil {
		return nil, err
	}
	removed, err := removeStalePartials(o.Out)
	if err != nil {
		p.unlock()
		return nil, err
	}
	if removed > 0 {
		log.Info().Str("out", o.Out).Int("folders", removed).Msg("removed unfinished outputs of an interrupted run")
	}
	if p.log, err = openStageLog(o.Out); err != nil {
		p.unlock()
		return nil, err
	}
	return p, nil
}

func (o PipelineOptions) validate() error {
	if o.Out == "" {
		return errors.New("no run folder: name one with --out")
	}
	if (o.Video == "") == (o.Data == "") {
		return errors.New("give exactly one of --video (a video to extract frames from) or --data (a clip folder with frames/ and masks/, or a root of them)")
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

func (p *pipeline) runClipStage(ctx context.Context, c *runClip, s clipStage) error {
	return p.runStage(ctx, c, s.name, s.run)
}

// runStage runs one stage, for clip c or for the whole run when c is nil,
// unless its fingerprint shows that the run folder already has its output.
func (p *pipeline) runStage(ctx context.Context, c *runClip, stage string,
	run func(context.Context, *runClip) error) error {
	fingerprint, err := p.stageFingerprint(stage, c)
	if err != nil {
		return err
	}
	if c != nil {
		c.fingerprint = fingerprint
	} else {
		p.fingerprint = fingerprint
	}

	key := stageKey(c, stage)
	if p.log.done(key, fingerprint) && p.outputsExist(c, stage) {
		p.stageDone(c, stage, true, 0)
		return nil
	}

	start := time.Now()
	if err := run(ctx, c); err != nil {
		if ctx.Err() != nil {
			// The stage's own message may suggest its own command's flags.
			return fmt.Errorf("stopped in the %s stage: %w; rerun with the same run folder to resume", key, ctx.Err())
		}
		return fmt.Errorf("%s stage: %w", key, err)
	}
	seconds := time.Since(start).Seconds()
	if err := p.log.finish(key, fingerprint, seconds); err != nil {
		return err
	}
	p.stageDone(c, stage, false, seconds)
	return nil
}

func (p *pipeline) stageDone(c *runClip, stage string, skipped bool, seconds float64) {
	result := StageResult{Stage: stage, Skipped: skipped, Seconds: seconds}
	event := log.Info().Str("stage", stage).Bool("skipped", skipped).Float64("seconds", seconds)
	if c != nil && c.name != "" {
		result.Clip = c.name
		event = event.Str("clip", c.name)
	}
	p.result.Stages = append(p.result.Stages, result)
	if skipped {
		event.Msg("stage output is up to date")
		return
	}
	event.Msg("stage finished")
}

// outputsExist reports whether the files a stage writes are all there, so
// a run folder edited by hand reruns the stage.
func (p *pipeline) outputsExist(c *runClip, stage string) bool {
	dir := p.options.Out
	if c != nil {
		dir = c.dir
	}
	for _, path := range stageOutputs[stage] {
		if !fileExists(filepath.Join(dir, path)) {
			return false
		}
	}
	return true
}

// stageOutputs are the files whose absence reruns a stage, relative to the
// clip's folder for a per-clip stage and to the run folder otherwise.
var stageOutputs = map[string][]string{
	StageExtract:   {"frames", "seeds", sourceName},
	StagePropagate: {filepath.Join("pseudo", "masks"), filepath.Join("pseudo", "propagation.json")},
	StageFilter:    {filepath.Join("filtered", "filter.json"), filepath.Join("filtered", "masks"), filepath.Join("pseudo", "dropped")},
	StageTrain:     {filepath.Join(checkpointsDir, bestName), historyName},
	StageExport:    {modelName},
	StageRender:    {overlayName, masksFolderName},
	StageEval:      {evalName},
}

// progress returns the progress callback of the stages of clip c, whose
// stage names carry the clip's name under a root of clips.
func (p *pipeline) progress(c *runClip) func(stage string, done, total int) {
	return func(stage string, done, total int) {
		if p.options.Progress != nil {
			p.options.Progress(stageKey(c, stage), done, total)
		}
	}
}

func (p *pipeline) path(elem ...string) string {
	return filepath.Join(append([]string{p.options.Out}, elem...)...)
}
