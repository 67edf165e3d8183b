package trainer

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/rs/zerolog/log"

	"github.com/medvseg/medvseg/segment"
)

// runSource is RUN/source.json: where the frames and seeds came from.
type runSource struct {
	Video string `json:"video,omitempty"`
	Data  string `json:"data,omitempty"`
	// FrameRate is the rate of the frames in frames per second, used for
	// overlay.mp4: the video's (resampled) rate, or 25 for a clip folder
	// unless a rate was set.
	FrameRate float64 `json:"frame_rate"`
	Frames    int     `json:"frames"`
	// Seeds are the frame numbers of the seed masks.
	Seeds []int `json:"seeds"`
}

// defaultFrameRate is the rate of overlay.mp4 for frames from a folder.
const defaultFrameRate = 25

// stageFingerprint hashes the fingerprint of the stage before, the inputs
// that the stage reads from outside the run folder, and its options. c is
// the clip of a per-clip stage and nil for train and export.
func (p *pipeline) stageFingerprint(stage string, c *runClip) (string, error) {
	o := p.options
	var previous any
	if c != nil {
		previous = c.fingerprint
	}
	var parts map[string]any
	switch stage {
	case StageExtract:
		inputs, err := p.extractInputs(c)
		if err != nil {
			return "", err
		}
		parts = inputs
	case StagePropagate:
		parts = map[string]any{"flow": o.Propagate.Flow, "consistency_threshold": o.Propagate.ConsistencyThreshold,
			"threshold": o.Propagate.Threshold, "resize_seeds": o.Propagate.ResizeSeeds}
	case StageFilter:
		f := o.Filter
		parts = map[string]any{"iou": f.IoUThreshold, "max_area_change": f.MaxAreaChange,
			"min_area": f.MinArea, "min_component": f.MinComponent}
	case StageTrain:
		previous = p.filterFingerprints()
		// Threads change speed, not the result, so they are left out.
		t := o.Train
		parts = map[string]any{"batch_size": t.BatchSize, "epochs": t.Epochs,
			"min_steps_per_epoch": t.MinStepsPerEpoch, "input_size": t.InputSize,
			"channels": t.channels(), "learning_rate": t.LearningRate, "weight_decay": t.WeightDecay,
			"val_fraction": t.ValFraction, "validation": "near-seeds", "loss": t.Loss, "random_seed": t.RandomSeed}
	case StageExport:
		previous = p.fingerprint
		parts = map[string]any{"threshold": o.Threshold}
	case StageRender:
		previous = p.fingerprint
		parts = map[string]any{}
	case StageEval:
		gt, err := p.groundTruth(c)
		if err != nil {
			return "", err
		}
		stamps, err := stampFolder(gt)
		if err != nil {
			return "", err
		}
		parts = map[string]any{"gt": stamps}
	}
	return fingerprint(stage, previous, parts)
}

// filterFingerprints returns what the training fingerprint follows: the
// fingerprint of the filter stage of every clip, or of the only clip.
func (p *pipeline) filterFingerprints() any {
	if len(p.clips) == 1 {
		return p.clips[0].fingerprint
	}
	prints := make([]string, len(p.clips))
	for i, c := range p.clips {
		prints[i] = c.fingerprint
	}
	return prints
}

// extractInputs identifies the frames and the content of the seeds of c.
func (p *pipeline) extractInputs(c *runClip) (map[string]any, error) {
	o := p.options
	files, err := selectSeedFiles(p.seedSource(c))
	if err != nil {
		return nil, err
	}
	paths := make([]string, len(files))
	for i, f := range files {
		paths[i] = f.Path
	}
	seeds, err := hashFiles(paths)
	if err != nil {
		return nil, err
	}

	parts := map[string]any{"seeds": seeds, "fps": o.Extract.FPS, "size": o.Extract.Size}
	if o.Video != "" {
		// The content, not the modification time, so a video written again
		// with the same bytes (such as the synth clip) reruns nothing.
		if parts["video"], err = hashFiles([]string{o.Video}); err != nil {
			return nil, fmt.Errorf("--video: %w", err)
		}
		return parts, nil
	}
	frames, _, err := ClipFolders(c.data)
	if err != nil {
		return nil, err
	}
	if parts["frames"], err = stampFolder(frames); err != nil {
		return nil, err
	}
	return parts, nil
}

// extract puts the frames of c into its frames folder and the seeds into
// its seeds folder.
func (p *pipeline) extract(ctx context.Context, c *runClip) error {
	o := p.options
	source := runSource{Video: o.Video, Data: c.data}

	if o.Video != "" {
		options := o.Extract
		options.Progress = p.progress(c)
		info, count, err := Extract(ctx, o.Video, c.dir, options)
		if err != nil {
			return err
		}
		source.FrameRate, source.Frames = info.FrameRate, count
	} else {
		count, err := p.copyClipFrames(c)
		if err != nil {
			return err
		}
		source.FrameRate, source.Frames = defaultFrameRate, count
		if o.Extract.FPS > 0 {
			source.FrameRate = o.Extract.FPS
		}
	}

	seeds, err := p.copySeeds(c)
	if err != nil {
		return err
	}
	source.Seeds = seeds

	data, err := json.MarshalIndent(source, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(c.path(sourceName), append(data, '\n'))
}

// copyClipFrames links or copies the frames of the clip folder into the
// frames folder of c, keeping their names.
func (p *pipeline) copyClipFrames(c *runClip) (int, error) {
	if !p.options.Extract.Size.IsZero() {
		return 0, fmt.Errorf("--resize applies to --video only: resize the frames of %q beforehand", c.data)
	}
	framesDir, _, err := ClipFolders(c.data)
	if err != nil {
		return 0, err
	}
	clip, err := OpenClip(framesDir)
	if err != nil {
		return 0, err
	}

	frames, err := newStagedFolder(c.path("frames"))
	if err != nil {
		return 0, err
	}
	defer frames.abort()
	progress := p.progress(c)
	for i, f := range clip.Frames {
		if err := linkOrCopy(f.Path, frames.path(f.Name)); err != nil {
			return 0, err
		}
		progress(StageExtract, i+1, len(clip.Frames))
	}
	return len(clip.Frames), frames.commit()
}

// copySeeds copies the selected seed masks of c into its seeds folder and
// returns their frame numbers.
func (p *pipeline) copySeeds(c *runClip) ([]int, error) {
	files, err := selectSeedFiles(p.seedSource(c))
	if err != nil {
		return nil, err
	}
	seeds, err := newStagedFolder(c.path("seeds"))
	if err != nil {
		return nil, err
	}
	defer seeds.abort()

	numbers := make([]int, len(files))
	for i, f := range files {
		if err := copyFile(f.Path, seeds.path(filepath.Base(f.Path))); err != nil {
			return nil, err
		}
		numbers[i] = f.Number
	}
	return numbers, seeds.commit()
}

// copyFile copies src to dst, never linking, so editing the run's copy
// cannot change the original.
func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("copy %q: %w", src, err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		return fmt.Errorf("copy %q to %q: %w", src, dst, err)
	}
	return nil
}

func (p *pipeline) propagate(ctx context.Context, c *runClip) error {
	frames, seeds, err := RunFolders(c.dir)
	if err != nil {
		return err
	}
	// The filter stage reuses the flows, and removes them unless
	// Propagate.KeepFlows is set.
	options := p.options.Propagate
	options.KeepFlows = true
	options.Progress = p.progress(c)
	_, err = Propagate(ctx, frames, SeedSource{Dir: seeds}, c.dir, options)
	return err
}

func (p *pipeline) filter(ctx context.Context, c *runClip) error {
	options := p.options.Filter
	options.Progress = p.progress(c)
	if _, err := Filter(ctx, c.dir, options); err != nil {
		return err
	}
	if p.options.Propagate.KeepFlows {
		return nil
	}
	if err := os.RemoveAll(c.path("flows")); err != nil {
		return fmt.Errorf("remove the optical flows after filtering: %w", err)
	}
	return nil
}

// train trains on the filtered pseudo-labels of every clip. It resumes
// from RUN/checkpoints/last when the last training run that started here
// had the same fingerprint, and otherwise removes the earlier checkpoints
// and history first.
func (p *pipeline) train(ctx context.Context) error {
	o := p.options.Train
	o.Out = p.options.Out
	o.ValidateNearSeeds = true
	if p.multiClip() {
		for _, c := range p.clips {
			o.Clips = append(o.Clips, c.path("filtered"))
		}
	} else {
		o.Data = p.path("filtered")
	}

	last := p.path(checkpointsDir, lastName)
	record := p.log.Stages[StageTrain]
	o.Resume = record != nil && record.Started == p.fingerprint && fileExists(last)
	if o.Resume {
		meta, _, err := ReadCheckpointMeta(last)
		if err != nil {
			return err
		}
		log.Info().Str("stage", StageTrain).Str("checkpoint", last).Int("finished_epochs", meta.Epoch).
			Msg("resuming training")
	} else {
		if err := os.RemoveAll(p.path(checkpointsDir)); err != nil {
			return fmt.Errorf("remove checkpoints of an earlier training run: %w", err)
		}
		if err := os.Remove(p.path(historyName)); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("remove the history of an earlier training run: %w", err)
		}
		if err := p.log.start(StageTrain, p.fingerprint); err != nil {
			return err
		}
	}

	progress := p.progress(nil)
	o.Progress = func(t TrainProgress) {
		progress(StageTrain, (t.Epoch-1)*t.Steps+t.Step, t.Epochs*t.Steps)
	}
	_, err := Train(ctx, o)
	return err
}

// export writes RUN/model.onnx with the data and the seeds of every clip
// in its provenance.
func (p *pipeline) export() error {
	o := p.options
	provenance := map[string]any{"version": o.Version, "data": o.Data}
	if o.Video != "" {
		provenance["data"] = o.Video
	}
	seeds := map[string][]int{}
	for _, c := range p.clips {
		source, err := readRunSource(c.dir)
		if err != nil {
			return err
		}
		seeds[c.name] = source.Seeds
	}
	if p.multiClip() {
		provenance["seeds"] = seeds
	} else {
		provenance["seeds"] = seeds[""]
	}
	return Export(ExportOptions{
		Checkpoint: p.path(checkpointsDir, bestName),
		Out:        p.path(modelName),
		Threshold:  o.Threshold,
		Provenance: provenance,
	})
}

// render runs the student on every frame of c: the overlay.mp4 and the
// student/masks folder of c, which the eval stage scores.
func (p *pipeline) render(ctx context.Context, c *runClip) error {
	source, err := readRunSource(c.dir)
	if err != nil {
		return err
	}
	_, err = Render(ctx, RenderOptions{
		Model:          p.path(modelName),
		Frames:         c.path("frames"),
		FrameRate:      source.FrameRate,
		Out:            c.path(overlayName),
		MasksDir:       c.path(masksFolderName),
		RuntimeLibrary: p.options.RuntimeLibrary,
		Device:         p.options.Device,
		Threads:        p.options.Train.Threads,
		Overlay:        segment.DefaultOverlayOptions,
		Progress:       p.progress(c),
	})
	return err
}

func readRunSource(run string) (*runSource, error) {
	path := filepath.Join(run, sourceName)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read run source: %w; is %q a run folder of RunPipeline? If so, delete its %s to rerun every stage",
			err, run, stagesName)
	}
	var source runSource
	if err := json.Unmarshal(data, &source); err != nil {
		return nil, fmt.Errorf("read run source %q: %w; delete %q to rerun every stage", path, err,
			filepath.Join(run, stagesName))
	}
	return &source, nil
}

// RunFrameRate returns the frame rate, in frames per second, of the frames
// of a run folder that RunPipeline wrote, or of one clip's folder
// RUN/clips/<clip> in a run on a root of clips.
func RunFrameRate(run string) (float64, error) {
	source, err := readRunSource(run)
	if err != nil {
		return 0, err
	}
	return source.FrameRate, nil
}

// RunClips returns the clip folders of a run folder that RunPipeline wrote
// for a root of clips, RUN/clips/<clip> in name order, and nil for a run
// on a single clip or video.
func RunClips(run string) ([]string, error) {
	dir := filepath.Join(run, clipsFolder)
	if !isFolder(dir) {
		return nil, nil
	}
	names, err := clipsBelow(dir, "frames")
	if err != nil {
		return nil, err
	}
	clips := make([]string, len(names))
	for i, name := range names {
		clips[i] = filepath.Join(dir, name)
	}
	return clips, nil
}
