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
// that the stage reads from outside the run folder, and its options.
func (p *pipeline) stageFingerprint(stage string) (string, error) {
	o := p.options
	var parts map[string]any
	switch stage {
	case StageExtract:
		inputs, err := p.extractInputs()
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
		// Threads change speed, not the result, so they are left out.
		t := o.Train
		parts = map[string]any{"batch_size": t.BatchSize, "epochs": t.Epochs, "input_size": t.InputSize,
			"channels": t.channels(), "learning_rate": t.LearningRate, "weight_decay": t.WeightDecay,
			"val_fraction": t.ValFraction, "loss": t.Loss, "random_seed": t.RandomSeed}
	case StageExport:
		parts = map[string]any{"threshold": o.Threshold}
	case StageRender:
		parts = map[string]any{}
	case StageEval:
		gt, err := p.groundTruth()
		if err != nil {
			return "", err
		}
		stamps, err := stampFolder(gt)
		if err != nil {
			return "", err
		}
		parts = map[string]any{"gt": stamps}
	}
	return fingerprint(stage, p.fingerprint, parts)
}

// seedSource returns the folder and frame numbers the seeds come from.
func (p *pipeline) seedSource() SeedSource {
	src := SeedSource{Dir: p.options.Seeds, Numbers: p.options.SeedFrames}
	if src.Dir == "" {
		src.Dir = filepath.Join(p.options.Data, "masks")
	}
	return src
}

// extractInputs identifies the frames and the content of the seeds.
func (p *pipeline) extractInputs() (map[string]any, error) {
	o := p.options
	files, err := selectSeedFiles(p.seedSource())
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
	frames, _, err := ClipFolders(o.Data)
	if err != nil {
		return nil, err
	}
	if parts["frames"], err = stampFolder(frames); err != nil {
		return nil, err
	}
	return parts, nil
}

// extract puts the frames into RUN/frames and the seeds into RUN/seeds.
func (p *pipeline) extract(ctx context.Context) error {
	o := p.options
	source := runSource{Video: o.Video, Data: o.Data}

	if o.Video != "" {
		options := o.Extract
		options.Progress = p.progress
		info, count, err := Extract(ctx, o.Video, o.Out, options)
		if err != nil {
			return err
		}
		source.FrameRate, source.Frames = info.FrameRate, count
	} else {
		count, err := p.copyClipFrames()
		if err != nil {
			return err
		}
		source.FrameRate, source.Frames = defaultFrameRate, count
		if o.Extract.FPS > 0 {
			source.FrameRate = o.Extract.FPS
		}
	}

	seeds, err := p.copySeeds()
	if err != nil {
		return err
	}
	source.Seeds = seeds

	data, err := json.MarshalIndent(source, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(p.path(sourceName), append(data, '\n'))
}

// copyClipFrames links or copies the frames of the clip folder into
// RUN/frames, keeping their names.
func (p *pipeline) copyClipFrames() (int, error) {
	if !p.options.Extract.Size.IsZero() {
		return 0, fmt.Errorf("--resize applies to --video only: resize the frames of %q beforehand", p.options.Data)
	}
	framesDir, _, err := ClipFolders(p.options.Data)
	if err != nil {
		return 0, err
	}
	clip, err := OpenClip(framesDir)
	if err != nil {
		return 0, err
	}

	frames, err := newStagedFolder(p.path("frames"))
	if err != nil {
		return 0, err
	}
	defer frames.abort()
	for i, f := range clip.Frames {
		if err := linkOrCopy(f.Path, frames.path(f.Name)); err != nil {
			return 0, err
		}
		p.progress(StageExtract, i+1, len(clip.Frames))
	}
	return len(clip.Frames), frames.commit()
}

// copySeeds copies the selected seed masks into RUN/seeds and returns
// their frame numbers.
func (p *pipeline) copySeeds() ([]int, error) {
	files, err := selectSeedFiles(p.seedSource())
	if err != nil {
		return nil, err
	}
	seeds, err := newStagedFolder(p.path("seeds"))
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

func (p *pipeline) propagate(ctx context.Context) error {
	frames, seeds, err := RunFolders(p.options.Out)
	if err != nil {
		return err
	}
	// The filter stage reuses the flows, and removes them unless
	// Propagate.KeepFlows is set.
	options := p.options.Propagate
	options.KeepFlows = true
	options.Progress = p.progress
	_, err = Propagate(ctx, frames, SeedSource{Dir: seeds}, p.options.Out, options)
	return err
}

func (p *pipeline) filter(ctx context.Context) error {
	options := p.options.Filter
	options.Progress = p.progress
	if _, err := Filter(ctx, p.options.Out, options); err != nil {
		return err
	}
	if p.options.Propagate.KeepFlows {
		return nil
	}
	if err := os.RemoveAll(p.path("flows")); err != nil {
		return fmt.Errorf("remove the optical flows after filtering: %w", err)
	}
	return nil
}

// train trains on RUN/filtered. It resumes from RUN/checkpoints/last when
// the last training run that started here had the same fingerprint, and
// otherwise removes the earlier checkpoints and history first.
func (p *pipeline) train(ctx context.Context) error {
	o := p.options.Train
	o.Data = p.path("filtered")
	o.Out = p.options.Out

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

	o.Progress = func(t TrainProgress) {
		p.progress(StageTrain, (t.Epoch-1)*t.Steps+t.Step, t.Epochs*t.Steps)
	}
	_, err := Train(ctx, o)
	return err
}

func (p *pipeline) export(ctx context.Context) error {
	source, err := p.readSource()
	if err != nil {
		return err
	}
	provenance := map[string]any{"seeds": source.Seeds, "version": p.options.Version}
	if source.Video != "" {
		provenance["data"] = source.Video
	} else {
		provenance["data"] = source.Data
	}
	return Export(ExportOptions{
		Checkpoint: p.path(checkpointsDir, bestName),
		Out:        p.path(modelName),
		Threshold:  p.options.Threshold,
		Provenance: provenance,
	})
}

// render runs the student on every frame: RUN/overlay.mp4 and the masks
// in RUN/student/masks, which the eval stage scores.
func (p *pipeline) render(ctx context.Context) error {
	source, err := p.readSource()
	if err != nil {
		return err
	}
	_, err = Render(ctx, RenderOptions{
		Model:          p.path(modelName),
		Frames:         p.path("frames"),
		FrameRate:      source.FrameRate,
		Out:            p.path(overlayName),
		MasksDir:       p.path(masksFolderName),
		RuntimeLibrary: p.options.RuntimeLibrary,
		Device:         p.options.Device,
		Threads:        p.options.Train.Threads,
		Overlay:        segment.DefaultOverlayOptions,
		Progress:       p.progress,
	})
	return err
}

func (p *pipeline) readSource() (*runSource, error) {
	return readRunSource(p.options.Out)
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
// of a run folder that RunPipeline wrote.
func RunFrameRate(run string) (float64, error) {
	source, err := readRunSource(run)
	if err != nil {
		return 0, err
	}
	return source.FrameRate, nil
}

// groundTruth returns the folder of ground-truth masks, or "" for none.
func (p *pipeline) groundTruth() (string, error) {
	o := p.options
	switch {
	case o.NoGT:
		return "", nil
	case o.GT != "":
		if !isFolder(o.GT) {
			return "", fmt.Errorf("--gt %q is not a folder: pass the folder of ground-truth masks", o.GT)
		}
		return o.GT, nil
	case o.Data != "":
		masks := filepath.Join(o.Data, "masks")
		if !isFolder(masks) {
			return "", nil
		}
		return masks, nil
	}
	return "", nil
}
