// Package trainer is medvseg's offline pipeline, from seed masks to a
// trained student. Train fits the U-Net of package trainer/unet to frames
// and masks.
package trainer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/google/renameio/v2"
	"github.com/rs/zerolog/log"

	"github.com/medvseg/medvseg/trainer/unet"
)

// TrainOptions configure Train.
type TrainOptions struct {
	// Data is DIR with DIR/frames/NAME.png and DIR/masks/NAME.png, or ROOT
	// with several ROOT/<clip>/frames and ROOT/<clip>/masks.
	Data string
	// Clips, when set, are the clip folders to train on, each with frames/
	// and masks/, in place of Data.
	Clips []string
	// Out is the run folder: checkpoints go to Out/checkpoints/{best,last},
	// the per-epoch history to Out/train_history.json.
	Out string

	// BatchSize is the number of frames per training step.
	BatchSize int
	// Epochs is the total number of epochs, counting those of a resumed run.
	Epochs int
	// MinStepsPerEpoch is the minimum number of training steps in an
	// epoch. An epoch is one pass over the training frames in random order
	// when that pass has at least MinStepsPerEpoch batches. A shorter
	// training set is repeated, each pass in a new order, and cut to
	// MinStepsPerEpoch full batches; every repeat of a frame gets its own
	// augmentation. 0 means one pass, however short.
	MinStepsPerEpoch int
	// InputSize is the side of the square network input in pixels, a
	// multiple of 2^(levels-1) so every upsampling has scale 2.
	InputSize int
	// Channels are the encoder channels; nil means unet.DefaultChannels.
	Channels []int

	// LearningRate is AdamW's peak learning rate; it decays along a cosine
	// to 1% of it by the last epoch.
	LearningRate float64
	WeightDecay  float64
	// Threads is the number of libtorch CPU threads.
	Threads int
	// ValFraction is the fraction of each clip's frames, taken from its end,
	// held out from training for validation; 0 trains on all frames and
	// picks the best checkpoint by training Dice.
	ValFraction float64
	// ValidateNearSeeds holds out, in a clip folder that Filter wrote, the
	// frames nearest a seed frame instead of those at the end
	// (splitNearSeeds). RunPipeline sets it. Folders without filter.json
	// keep the end block.
	ValidateNearSeeds bool
	Loss              unet.LossWeights
	// RandomSeed sets weight initialisation, shuffling and augmentation, so
	// the same seed and data give the same losses.
	RandomSeed uint64
	// Resume continues the run in Out from Out/checkpoints/last.
	Resume bool

	// Progress, when set, is called after every training step.
	Progress func(TrainProgress)
}

// DefaultTrainOptions are the defaults of `medvseg train`.
var DefaultTrainOptions = TrainOptions{
	BatchSize:        8,
	Epochs:           30,
	MinStepsPerEpoch: 8,
	InputSize:        256,
	LearningRate:     1e-3,
	WeightDecay:      1e-4,
	Threads:          runtime.NumCPU(),
	ValFraction:      0.15,
	Loss:             unet.LossWeights{BCE: 1, Dice: 1, Boundary: 0.5},
	RandomSeed:       1,
}

// TrainProgress reports one training step.
type TrainProgress struct {
	Epoch  int // 1-based
	Epochs int
	Step   int // 1-based within the epoch
	Steps  int
	Loss   float32
	Dice   float32
}

// EpochResult is one line of the training history.
type EpochResult struct {
	Epoch        int     `json:"epoch"`
	LearningRate float64 `json:"learning_rate"`
	TrainLoss    float64 `json:"train_loss"`
	TrainBCE     float64 `json:"train_bce"`
	TrainDice    float64 `json:"train_dice"` // batch Dice of logits > 0
	// Steps is the number of training steps, and so of AdamW updates.
	Steps   int     `json:"steps"`
	ValLoss float64 `json:"val_loss"`
	ValBCE  float64 `json:"val_bce"`
	ValDice float64 `json:"val_dice"` // mean per-frame Dice; 1 for an empty frame predicted empty
	Seconds float64 `json:"seconds"`
}

// TrainHistory is the content of Out/train_history.json.
type TrainHistory struct {
	TrainFrames      int `json:"train_frames"`
	ValidationFrames int `json:"validation_frames"`
	// Clips are the frame counts of each clip folder trained on.
	Clips     []ClipSplit   `json:"clips,omitempty"`
	BestEpoch int           `json:"best_epoch"`
	BestDice  float64       `json:"best_dice"`
	Epochs    []EpochResult `json:"epochs"`
}

// ClipSplit is how many frames of one clip folder went to training and
// how many to validation.
type ClipSplit struct {
	Data             string `json:"data"`
	TrainFrames      int    `json:"train_frames"`
	ValidationFrames int    `json:"validation_frames"`
}

// CheckpointMeta is the run metadata in every checkpoint that Train writes:
// the input size and normalisation that the ONNX export needs, and what a
// resumed run needs besides the model and AdamW state. Each epoch's shuffle
// and augmentation come from a generator seeded by (RandomSeed, Epoch), so
// no generator state is stored.
type CheckpointMeta struct {
	// Epoch is the last finished epoch.
	Epoch      int    `json:"epoch"`
	RandomSeed uint64 `json:"random_seed"`
	// InputSize is the side of the square network input in pixels.
	InputSize int `json:"input_size"`
	// Mean and Std normalise the RGB input scaled to [0,1].
	Mean    [3]float32   `json:"mean"`
	Std     [3]float32   `json:"std"`
	History TrainHistory `json:"history"`
}

// Checkpoint and history paths inside the run folder.
const (
	checkpointsDir = "checkpoints"
	bestName       = "best"
	lastName       = "last"
	historyName    = "train_history.json"
)

// Train trains the U-Net on o.Data or o.Clips and writes checkpoints and history to
// o.Out. It returns the history. Cancelling ctx stops it between steps, and
// the run can then continue from the last finished epoch with o.Resume.
//
// Every frame and mask stays in memory at the input size, 4 bytes a pixel:
// 256 KiB a frame at 256x256, so 1 GiB holds about 4000 frames.
func Train(ctx context.Context, o TrainOptions) (*TrainHistory, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}

	train, validation, clips, err := loadTrainingData(o)
	if err != nil {
		return nil, err
	}

	checkpoints := filepath.Join(o.Out, checkpointsDir)
	if err := os.MkdirAll(checkpoints, 0o755); err != nil {
		return nil, fmt.Errorf("create checkpoint folder %q: %w; choose an --out you can write to", checkpoints, err)
	}

	model, state, err := openModel(o)
	if err != nil {
		return nil, err
	}
	defer model.Close()

	state.History.TrainFrames = len(train)
	state.History.ValidationFrames = len(validation)
	state.History.Clips = clips
	log.Info().Str("data", o.Data).Strs("clips", o.Clips).Int("train_frames", len(train)).Int("validation_frames", len(validation)).
		Int("input_size", o.InputSize).Ints("channels", model.Channels()).Int("first_epoch", state.Epoch+1).
		Int("epochs", o.Epochs).Int("min_steps_per_epoch", o.MinStepsPerEpoch).Uint64("random_seed", o.RandomSeed).
		Msg("train")

	loop := &trainLoop{options: o, model: model, train: train, validation: validation}
	defer loop.close()
	for epoch := state.Epoch + 1; epoch <= o.Epochs; epoch++ {
		result, err := loop.epoch(ctx, epoch)
		if err != nil {
			return &state.History, err
		}

		state.record(result, len(validation) > 0)
		if err := saveEpoch(o.Out, model, state); err != nil {
			return &state.History, err
		}

		log.Info().Int("epoch", epoch).Int("steps", result.Steps).Float64("train_loss", result.TrainLoss).Float64("train_dice", result.TrainDice).
			Float64("val_loss", result.ValLoss).Float64("val_dice", result.ValDice).
			Float64("learning_rate", result.LearningRate).Float64("seconds", result.Seconds).Msg("epoch")
	}

	return &state.History, nil
}

func (o TrainOptions) validate() error {
	switch {
	case o.Data == "" && len(o.Clips) == 0:
		return errors.New("no training data: set --data to DIR with DIR/frames and DIR/masks")
	case o.Out == "":
		return errors.New("no run folder: set --out")
	case o.BatchSize < 1:
		return fmt.Errorf("invalid batch size %d: must be at least 1", o.BatchSize)
	case o.Epochs < 1:
		return fmt.Errorf("invalid epoch count %d: must be at least 1", o.Epochs)
	case o.MinStepsPerEpoch < 0:
		return fmt.Errorf("invalid minimum steps per epoch %d: must be 0 or more", o.MinStepsPerEpoch)
	case o.LearningRate <= 0 || math.IsInf(o.LearningRate, 0):
		return fmt.Errorf("invalid learning rate %v: must be positive", o.LearningRate)
	case o.WeightDecay < 0:
		return fmt.Errorf("invalid weight decay %v: must be 0 or more", o.WeightDecay)
	case o.Threads < 1 || o.Threads > 4*runtime.NumCPU():
		return fmt.Errorf("invalid thread count %d: must be 1 to %d (4 per CPU)", o.Threads, 4*runtime.NumCPU())
	case o.ValFraction < 0 || o.ValFraction >= 1 || math.IsNaN(o.ValFraction):
		return fmt.Errorf("invalid validation fraction %v: must be in [0, 1)", o.ValFraction)
	case o.Loss.BCE < 0 || o.Loss.Dice < 0 || o.Loss.Boundary < 0:
		return fmt.Errorf("invalid loss weights %+v: must be 0 or more", o.Loss)
	case o.Loss.BCE+o.Loss.Dice+o.Loss.Boundary == 0:
		return errors.New("invalid loss weights: all are 0, set at least one of --bce-weight, --dice-weight, --boundary-weight")
	}

	levels := len(o.channels())
	if multiple := 1 << (levels - 1); o.InputSize < multiple || o.InputSize%multiple != 0 {
		return fmt.Errorf("invalid input size %d: must be a positive multiple of %d for a U-Net of %d levels",
			o.InputSize, multiple, levels)
	}
	return nil
}

func (o TrainOptions) channels() []int {
	if o.Channels == nil {
		return unet.DefaultChannels
	}
	return o.Channels
}

func loadTrainingData(o TrainOptions) (train, validation []trainSample, splits []ClipSplit, err error) {
	clips := o.Clips
	if len(clips) == 0 {
		if clips, err = trainingClips(o.Data); err != nil {
			return nil, nil, nil, err
		}
	}

	for _, dir := range clips {
		samples, err := loadTrainingClip(dir, o.InputSize)
		if err != nil {
			return nil, nil, nil, err
		}
		t, v, err := splitClip(dir, samples, o)
		if err != nil {
			return nil, nil, nil, err
		}
		train = append(train, t...)
		validation = append(validation, v...)
		splits = append(splits, ClipSplit{Data: dir, TrainFrames: len(t), ValidationFrames: len(v)})
	}
	return train, validation, splits, nil
}

// splitClip splits the frames of one clip folder into training and
// validation frames.
func splitClip(dir string, samples []trainSample, o TrainOptions) (train, validation []trainSample, err error) {
	if o.ValidateNearSeeds {
		distances, err := seedDistances(dir)
		if err != nil {
			return nil, nil, err
		}
		if distances != nil {
			train, validation = splitNearSeeds(samples, o.ValFraction, distances)
			return train, validation, nil
		}
	}
	train, validation = splitValidation(samples, o.ValFraction)
	return train, validation, nil
}

// openModel builds a new model, or with o.Resume loads Out/checkpoints/last
// after checking that it belongs to a run with the same settings.
func openModel(o TrainOptions) (*unet.Model, CheckpointMeta, error) {
	last := filepath.Join(o.Out, checkpointsDir, lastName)
	state := CheckpointMeta{RandomSeed: o.RandomSeed, InputSize: o.InputSize, Mean: InputMean, Std: InputStd}

	config := unet.Config{Channels: o.Channels, RandomSeed: o.RandomSeed, Threads: o.Threads,
		LearningRate: o.LearningRate, WeightDecay: o.WeightDecay}

	if !o.Resume {
		if _, err := os.Stat(last); err == nil {
			return nil, CheckpointMeta{}, fmt.Errorf("run folder %q already has checkpoint %q: pass --resume to continue that run, or choose another --out",
				o.Out, last)
		}
		model, err := unet.New(config)
		return model, state, err
	}

	state, channels, err := ReadCheckpointMeta(last)
	if errors.Is(err, os.ErrNotExist) {
		return nil, CheckpointMeta{}, fmt.Errorf("--resume: no checkpoint %q: train without --resume first", last)
	}
	if err != nil {
		return nil, CheckpointMeta{}, err
	}
	if err := state.matches(o, channels, last); err != nil {
		return nil, CheckpointMeta{}, err
	}

	model, err := unet.New(config)
	if err != nil {
		return nil, CheckpointMeta{}, err
	}
	if _, err := model.Load(last); err != nil {
		model.Close()
		return nil, CheckpointMeta{}, err
	}
	return model, state, nil
}

// ReadCheckpointMeta reads the run metadata and the encoder channels of a
// checkpoint that Train wrote.
func ReadCheckpointMeta(path string) (CheckpointMeta, []int, error) {
	info, err := unet.ReadCheckpointInfo(path)
	if err != nil {
		return CheckpointMeta{}, nil, err
	}

	var meta CheckpointMeta
	if err := json.Unmarshal(info.Meta, &meta); err != nil {
		return CheckpointMeta{}, nil, fmt.Errorf("checkpoint %q has invalid training metadata: %w", path, err)
	}
	if meta.InputSize == 0 {
		return CheckpointMeta{}, nil, fmt.Errorf("checkpoint %q has no training metadata: it was not written by medvseg train", path)
	}
	return meta, info.Channels, nil
}

func (s CheckpointMeta) matches(o TrainOptions, channels []int, path string) error {
	if !slices.Equal(o.channels(), channels) {
		return fmt.Errorf("--resume: checkpoint %q has channels %v, this run asks for %v: resume with the same channels",
			path, channels, o.channels())
	}
	if s.InputSize != o.InputSize {
		return fmt.Errorf("--resume: checkpoint %q was trained at --input-size %d, this run asks for %d: pass --input-size %d",
			path, s.InputSize, o.InputSize, s.InputSize)
	}
	if s.RandomSeed != o.RandomSeed {
		return fmt.Errorf("--resume: checkpoint %q was trained with --random-seed %d, this run asks for %d: pass --random-seed %d",
			path, s.RandomSeed, o.RandomSeed, s.RandomSeed)
	}
	return nil
}

// record appends an epoch to the history and updates the best epoch, by
// validation Dice when there is validation data, else by training Dice.
func (s *CheckpointMeta) record(result EpochResult, hasValidation bool) {
	s.Epoch = result.Epoch
	s.History.Epochs = append(s.History.Epochs, result)

	dice := result.TrainDice
	if hasValidation {
		dice = result.ValDice
	}
	if s.History.BestEpoch == 0 || dice > s.History.BestDice {
		s.History.BestEpoch = result.Epoch
		s.History.BestDice = dice
	}
}

// saveEpoch writes the last checkpoint, the best one when this epoch is the
// best, and the history; each file goes to a temporary name first.
func saveEpoch(out string, model *unet.Model, state CheckpointMeta) error {
	dir := filepath.Join(out, checkpointsDir)
	if err := model.Save(filepath.Join(dir, lastName), state); err != nil {
		return err
	}
	if state.History.BestEpoch == state.Epoch {
		if err := model.Save(filepath.Join(dir, bestName), state); err != nil {
			return err
		}
	}
	return writeHistory(filepath.Join(out, historyName), state.History)
}

func writeHistory(path string, history TrainHistory) error {
	encoded, err := json.MarshalIndent(history, "", "  ")
	if err != nil {
		return err
	}
	if err := renameio.WriteFile(path, append(encoded, '\n'), 0o644); err != nil {
		return fmt.Errorf("write training history %q: %w", path, err)
	}
	return nil
}

// ReadTrainHistory reads a run folder's train_history.json.
func ReadTrainHistory(out string) (*TrainHistory, error) {
	path := filepath.Join(out, historyName)
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read training history: %w", err)
	}
	var history TrainHistory
	if err := json.Unmarshal(raw, &history); err != nil {
		return nil, fmt.Errorf("read training history %q: %w", path, err)
	}
	return &history, nil
}

// learningRate returns the cosine-decayed learning rate of a 1-based epoch:
// peak at epoch 1, 1% of the peak at the last.
func learningRate(peak float64, epoch, epochs int) float64 {
	if epochs <= 1 {
		return peak
	}
	progress := float64(epoch-1) / float64(epochs-1)
	floor := peak / 100
	return floor + (peak-floor)*(1+math.Cos(math.Pi*progress))/2
}

// epochRandom returns the generator for an epoch's shuffle and augmentation.
func epochRandom(seed uint64, epoch int) *rand.Rand {
	return rand.New(rand.NewPCG(seed, uint64(epoch)))
}

func seconds(start time.Time) float64 { return time.Since(start).Seconds() }
