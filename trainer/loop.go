package trainer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/medvseg/medvseg/trainer/unet"
)

// trainLoop runs epochs: augmented training batches, then validation. It owns
// the batch buffers and the augmenter.
type trainLoop struct {
	options    TrainOptions
	model      *unet.Model
	train      []trainSample
	validation []trainSample

	augmenter *augmenter
	batch     unet.Batch
	logits    []float32
}

func (l *trainLoop) close() {
	if l.augmenter != nil {
		l.augmenter.Close()
	}
}

// buffers sizes the batch for n samples.
func (l *trainLoop) buffers(n int) {
	size := l.options.InputSize
	pixels := n * size * size
	if cap(l.batch.Images) < 3*pixels {
		l.batch.Images = make([]float32, 3*pixels)
		l.batch.Masks = make([]float32, pixels)
		l.logits = make([]float32, pixels)
	}
	l.batch = unet.Batch{N: n, Height: size, Width: size,
		Images: l.batch.Images[:3*pixels], Masks: l.batch.Masks[:pixels]}
	l.logits = l.logits[:pixels]
}

func (l *trainLoop) epoch(ctx context.Context, epoch int) (EpochResult, error) {
	o := l.options
	start := time.Now()
	result := EpochResult{Epoch: epoch, LearningRate: learningRate(o.LearningRate, epoch, o.Epochs)}
	if err := l.model.SetLearningRate(result.LearningRate); err != nil {
		return result, err
	}
	if l.augmenter == nil {
		l.augmenter = newAugmenter(o.InputSize)
	}

	rng := epochRandom(o.RandomSeed, epoch)
	order := epochOrder(rng, len(l.train), o.BatchSize, o.MinStepsPerEpoch)
	steps := (len(order) + o.BatchSize - 1) / o.BatchSize
	result.Steps = steps
	size := o.InputSize
	plane := size * size

	var lossSum, bceSum, diceSum float64
	for step := range steps {
		if err := ctx.Err(); err != nil {
			return result, fmt.Errorf("training stopped in epoch %d: %w; continue it with --resume", epoch, err)
		}

		indices := order[step*o.BatchSize : min((step+1)*o.BatchSize, len(order))]
		l.buffers(len(indices))
		for k, i := range indices {
			err := l.augmenter.Apply(rng, l.train[i], l.batch.Images[3*k*plane:3*(k+1)*plane],
				l.batch.Masks[k*plane:(k+1)*plane])
			if err != nil {
				return result, err
			}
		}

		loss, dice, err := l.model.TrainStep(l.batch, o.Loss)
		if err != nil {
			return result, fmt.Errorf("epoch %d, step %d: %w", epoch, step+1, err)
		}
		lossSum += float64(loss.Total)
		bceSum += float64(loss.BCE)
		diceSum += float64(dice)

		if o.Progress != nil {
			o.Progress(TrainProgress{Epoch: epoch, Epochs: o.Epochs, Step: step + 1, Steps: steps,
				Loss: loss.Total, Dice: dice})
		}
	}
	result.TrainLoss = lossSum / float64(steps)
	result.TrainBCE = bceSum / float64(steps)
	result.TrainDice = diceSum / float64(steps)

	if err := l.validate(ctx, &result); err != nil {
		return result, err
	}
	result.Seconds = seconds(start)
	return result, nil
}

// epochOrder returns the indices of the training frames of one epoch. It
// is a random permutation of all n, one pass, when that makes at least
// minSteps batches. Otherwise further permutations follow, cut to minSteps
// full batches in all. rng draws nothing more in the first case, so a
// training set that long trains as it did without a minimum.
func epochOrder(rng *rand.Rand, n, batchSize, minSteps int) []int {
	order := rng.Perm(n)
	samples := batchSize * minSteps
	if n == 0 || n > batchSize*(minSteps-1) {
		return order
	}
	for len(order) < samples {
		order = append(order, rng.Perm(n)...)
	}
	return order[:samples]
}

// validate runs the validation frames, without augmentation, in evaluation
// mode and sets the loss and the mean per-frame Dice at the input size.
func (l *trainLoop) validate(ctx context.Context, result *EpochResult) error {
	if len(l.validation) == 0 {
		return nil
	}

	o := l.options
	plane := o.InputSize * o.InputSize
	var lossSum, bceSum, diceSum float64
	for first := 0; first < len(l.validation); first += o.BatchSize {
		if err := ctx.Err(); err != nil {
			return err
		}

		chunk := l.validation[first:min(first+o.BatchSize, len(l.validation))]
		l.buffers(len(chunk))
		for k, s := range chunk {
			normalise(s.bgr, l.batch.Images[3*k*plane:3*(k+1)*plane])
			for i, v := range s.mask {
				l.batch.Masks[k*plane+i] = float32(v) / 255
			}
		}

		loss, err := l.model.Forward(l.batch, o.Loss, l.logits)
		if err != nil {
			return fmt.Errorf("validate epoch %d: %w", result.Epoch, err)
		}
		n := float64(len(chunk))
		lossSum += float64(loss.Total) * n
		bceSum += float64(loss.BCE) * n
		for k := range chunk {
			diceSum += frameDice(l.logits[k*plane:(k+1)*plane], l.batch.Masks[k*plane:(k+1)*plane])
		}
	}

	n := float64(len(l.validation))
	result.ValLoss = lossSum / n
	result.ValBCE = bceSum / n
	result.ValDice = diceSum / n
	return nil
}

// frameDice returns the Dice of logits > 0 against a 0/1 mask, 1 when both
// are empty.
func frameDice(logits, mask []float32) float64 {
	var intersection, predicted, truth int
	for i, logit := range logits {
		p := logit > 0
		g := mask[i] > 0.5
		if p {
			predicted++
		}
		if g {
			truth++
		}
		if p && g {
			intersection++
		}
	}
	if predicted+truth == 0 {
		return 1
	}
	return 2 * float64(intersection) / float64(predicted+truth)
}
