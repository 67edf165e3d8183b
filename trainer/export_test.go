package trainer

import (
	"image"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gocv.io/x/gocv"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/segment"
	"github.com/medvseg/medvseg/trainer/unet"
)

// exportFrames returns real endoscopy frames resized to size x size with
// pixel-area averaging, the resize of both training and segment.Model.
func exportFrames(t *testing.T, size int) []*codec.Frame {
	t.Helper()
	var paths []string
	for _, pattern := range []string{"segcol/Seq_003_35920/frames/*.png", "cvc/seq01/frames/*.png", "kvasir/frames/*.png"} {
		found, _ := filepath.Glob(filepath.Join("../../shared/data/endo", pattern))
		if len(found) == 0 {
			t.Fatalf("no frames match %s under ../../shared/data/endo: the shared endoscopy data is missing", pattern)
		}
		paths = append(paths, found[:2]...)
	}

	var frames []*codec.Frame
	for _, path := range paths {
		full := &codec.Frame{}
		if err := codec.ReadPNG(path, full); err != nil {
			t.Fatal(err)
		}
		src, err := gocv.NewMatFromBytes(full.Height, full.Width, gocv.MatTypeCV8UC3, full.Pix)
		if err != nil {
			t.Fatal(err)
		}
		dst := gocv.NewMat()
		gocv.Resize(src, &dst, image.Pt(size, size), 0, 0, gocv.InterpolationArea)
		f := codec.NewFrame(size, size)
		copy(f.Pix, dst.ToBytes())
		src.Close()
		dst.Close()
		frames = append(frames, f)
	}
	return frames
}

// trainedCheckpoint writes a checkpoint whose batch-norm statistics have
// moved away from their initial values, so folding them is exercised.
func trainedCheckpoint(t *testing.T, frames []*codec.Frame, size int) string {
	t.Helper()
	model, err := unet.New(unet.Config{Channels: []int{8, 16, 32, 64}, RandomSeed: 3, Threads: 2, LearningRate: 1e-2})
	if err != nil {
		t.Fatal(err)
	}
	defer model.Close()

	plane := size * size
	batch := unet.Batch{N: len(frames), Height: size, Width: size,
		Images: make([]float32, 3*plane*len(frames)), Masks: make([]float32, plane*len(frames))}
	for i, f := range frames {
		normalise(f.Pix, batch.Images[3*plane*i:3*plane*(i+1)])
		for j := 0; j < plane; j++ {
			if f.Pix[3*j+2] > 150 {
				batch.Masks[plane*i+j] = 1
			}
		}
	}
	for step := 0; step < 5; step++ {
		if _, _, err := model.TrainStep(batch, unet.LossWeights{BCE: 1, Dice: 1, Boundary: 1}); err != nil {
			t.Fatal(err)
		}
	}

	path := filepath.Join(t.TempDir(), "best")
	meta := CheckpointMeta{Epoch: 1, RandomSeed: 3, InputSize: size, Mean: InputMean, Std: InputStd}
	if err := model.Save(path, meta); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestExportMatchesLibtorch(t *testing.T) {
	const size = 64
	frames := exportFrames(t, size)
	checkpoint := trainedCheckpoint(t, frames, size)

	out := filepath.Join(t.TempDir(), "model.onnx")
	if err := Export(ExportOptions{Checkpoint: checkpoint, Out: out, Provenance: map[string]any{"data": "test"}}); err != nil {
		t.Fatal(err)
	}

	// libtorch in evaluation mode.
	torchModel, err := unet.New(unet.Config{Channels: []int{8, 16, 32, 64}})
	if err != nil {
		t.Fatal(err)
	}
	defer torchModel.Close()
	if _, err := torchModel.Load(checkpoint); err != nil {
		t.Fatal(err)
	}
	plane := size * size
	batch := unet.Batch{N: len(frames), Height: size, Width: size, Images: make([]float32, 3*plane*len(frames))}
	for i, f := range frames {
		normalise(f.Pix, batch.Images[3*plane*i:3*plane*(i+1)])
	}
	want := make([]float32, plane*len(frames))
	if _, err := torchModel.Forward(batch, unet.LossWeights{}, want); err != nil {
		t.Fatal(err)
	}

	// ONNX Runtime through segment.Model, which does its own preprocessing.
	if err := segment.InitRuntime(segment.LibraryPath("")); err != nil {
		t.Fatalf("%v (make test sets %s)", err, segment.LibraryEnv)
	}
	model, err := segment.LoadModel(out, segment.ModelOptions{Device: segment.DeviceCPU})
	if err != nil {
		t.Fatal(err)
	}
	defer model.Close()

	info := model.Info()
	if info.InputSize != (codec.Size{Width: size, Height: size}) {
		t.Errorf("exported input size %v, expected %dx%d", info.InputSize, size, size)
	}
	if info.Mean != InputMean || info.Std != InputStd {
		t.Errorf("exported mean %v std %v, expected %v and %v", info.Mean, info.Std, InputMean, InputStd)
	}
	if !strings.Contains(string(info.Provenance), `"data":"test"`) {
		t.Errorf("provenance %s lacks the entry passed to Export", info.Provenance)
	}

	logits := make([]*segment.Map, len(frames))
	if err := model.Logits(frames, logits); err != nil {
		t.Fatal(err)
	}

	maxDiff, spread := 0.0, 0.0
	for i := range frames {
		for j, v := range logits[i].Pix {
			reference := float64(want[plane*i+j])
			maxDiff = math.Max(maxDiff, math.Abs(float64(v)-reference))
			spread = math.Max(spread, math.Abs(reference))
		}
	}
	t.Logf("max abs logit difference %.2g over %d real frames (largest logit %.2f)", maxDiff, len(frames), spread)
	if maxDiff >= 1e-3 {
		t.Errorf("ONNX Runtime and libtorch logits differ by up to %g, expected below 1e-3", maxDiff)
	}
	if spread < 0.1 {
		t.Errorf("largest logit %.3f: the network output is too flat for the comparison to mean anything", spread)
	}
}

func TestExportRejectsBadCheckpoint(t *testing.T) {
	dir := t.TempDir()
	for _, path := range []string{filepath.Join(dir, "missing"), writeText(t, dir, "junk", "not a checkpoint")} {
		err := Export(ExportOptions{Checkpoint: path, Out: filepath.Join(dir, "model.onnx")})
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("export of %q: error %v, expected one naming the file", path, err)
		}
	}
}

func writeText(t *testing.T, dir, name, text string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
