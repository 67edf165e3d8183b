package trainer

import (
	"fmt"

	"github.com/medvseg/medvseg/segment/onnx"
	"github.com/medvseg/medvseg/trainer/unet"
)

// ExportOptions sets what Export writes.
type ExportOptions struct {
	// Checkpoint is a checkpoint written by Train, such as RUN/checkpoints/best.
	Checkpoint string
	// Out is the ONNX file to write.
	Out string
	// Threshold is the probability above which the model's users count a
	// pixel as lesion; 0 means 0.5.
	Threshold float64
	// Provenance adds entries to the medvseg.provenance metadata, such as
	// the data and seeds the model was trained from and the medvseg version.
	Provenance map[string]any
}

// Export writes a trained checkpoint as an ONNX model that segment.Model
// loads: the same U-Net rebuilt by parameter name with the ONNX writer,
// batch normalisation folded into the convolutions, and the input size,
// normalisation, threshold and provenance in its metadata. The file appears
// only when complete.
func Export(o ExportOptions) error {
	meta, channels, err := ReadCheckpointMeta(o.Checkpoint)
	if err != nil {
		return err
	}

	weights, err := readWeights(o.Checkpoint, channels)
	if err != nil {
		return err
	}

	threshold := o.Threshold
	if threshold == 0 {
		threshold = 0.5
	}
	if !(threshold > 0 && threshold < 1) {
		return fmt.Errorf("invalid threshold %v: use a probability between 0 and 1", threshold)
	}

	metadata, err := onnx.NewMetadata(onnx.Preprocessing{
		Width: meta.InputSize, Height: meta.InputSize,
		Mean: float64s(meta.Mean), Std: float64s(meta.Std), Threshold: threshold,
	}, provenance(o, meta, channels))
	if err != nil {
		return err
	}

	network, err := onnx.UNet(onnx.UNetOptions{
		Width: meta.InputSize, Height: meta.InputSize, Channels: channels,
		FoldBatchNorm: true, Metadata: metadata,
	}, weights)
	if err != nil {
		return fmt.Errorf("export %q: %w", o.Checkpoint, err)
	}
	return network.WriteFile(o.Out)
}

// readWeights loads a checkpoint into libtorch and copies out every tensor
// the ONNX U-Net needs, by name. A name the checkpoint lacks is an error
// that names it.
func readWeights(checkpoint string, channels []int) (map[string][]float32, error) {
	model, err := unet.New(unet.Config{Channels: channels})
	if err != nil {
		return nil, err
	}
	defer model.Close()

	if _, err := model.Load(checkpoint); err != nil {
		return nil, err
	}

	weights := map[string][]float32{}
	for _, p := range onnx.UNetParameters(channels) {
		values, err := model.ReadTensor(p.Name, nil)
		if err != nil {
			return nil, fmt.Errorf("export %q: the ONNX U-Net needs %s: %w", checkpoint, p.Name, err)
		}
		if want := shapeLen(p.Shape); len(values) != want {
			return nil, fmt.Errorf("export %q: %s has %d values, the ONNX U-Net expects shape %v (%d values)",
				checkpoint, p.Name, len(values), p.Shape, want)
		}
		weights[p.Name] = values
	}
	return weights, nil
}

func provenance(o ExportOptions, meta CheckpointMeta, channels []int) map[string]any {
	out := map[string]any{
		"network":     "unet",
		"channels":    channels,
		"epochs":      meta.Epoch,
		"random_seed": meta.RandomSeed,
		"checkpoint":  o.Checkpoint,
	}
	if meta.History.BestEpoch > 0 {
		out["best_epoch"] = meta.History.BestEpoch
		out["validation_dice"] = meta.History.BestDice
	}
	for k, v := range o.Provenance {
		out[k] = v
	}
	return out
}

func float64s(v [3]float32) [3]float64 {
	return [3]float64{float64(v[0]), float64(v[1]), float64(v[2])}
}

func shapeLen(shape []int64) int {
	n := 1
	for _, d := range shape {
		n *= int(d)
	}
	return n
}
