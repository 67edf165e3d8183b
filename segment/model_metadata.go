package segment

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/medvseg/medvseg/codec"
	"github.com/medvseg/medvseg/segment/onnx"
)

// ModelInfo describes a loaded model: its tensors and the preprocessing and
// threshold from its metadata, with defaults filled in for absent keys.
type ModelInfo struct {
	InputName  string
	OutputName string
	// InputSize is the network input size, from medvseg.input_size or else
	// from the input's static shape.
	InputSize codec.Size
	// Mean and Std normalise RGB on [0,1]: x = (v/255 - Mean) / Std. The
	// defaults are 0 and 1.
	Mean, Std [3]float32
	// Threshold is the probability above which a pixel is foreground; the
	// default is 0.5.
	Threshold float32
	// Provenance is the JSON of medvseg.provenance, or nil when absent.
	Provenance json.RawMessage
}

// defaultThreshold is the probability threshold of a model without medvseg.threshold.
const defaultThreshold = 0.5

// readModelInfo reads the tensor names, shapes and metadata of the ONNX
// model in data. The input shape it returns has -1 for dynamic dimensions.
func readModelInfo(data []byte) (ModelInfo, ort.Shape, ort.Shape, error) {
	inputs, outputs, err := ort.GetInputOutputInfoWithONNXData(data)
	if err != nil {
		return ModelInfo{}, nil, nil, fmt.Errorf("%w: the file is not an ONNX model that ONNX Runtime %s "+
			"can load; re-export it", err, RuntimeVersion())
	}
	if len(inputs) != 1 || len(outputs) != 1 {
		return ModelInfo{}, nil, nil, fmt.Errorf("model has %d inputs and %d outputs: expected one "+
			"image input and one logits output", len(inputs), len(outputs))
	}

	in, out := inputs[0], outputs[0]
	for _, t := range []ort.InputOutputInfo{in, out} {
		if t.OrtValueType != ort.ONNXTypeTensor || t.DataType != ort.TensorElementDataTypeFloat {
			return ModelInfo{}, nil, nil, fmt.Errorf("model tensor %s: expected a float32 tensor", t.String())
		}
	}

	info := ModelInfo{
		InputName:  in.Name,
		OutputName: out.Name,
		Std:        [3]float32{1, 1, 1},
		Threshold:  defaultThreshold,
	}
	if err := readMetadata(data, &info); err != nil {
		return ModelInfo{}, nil, nil, err
	}
	return info, in.Dimensions, out.Dimensions, nil
}

func readMetadata(data []byte, info *ModelInfo) error {
	metadata, err := ort.GetModelMetadataWithONNXData(data)
	if err != nil {
		return fmt.Errorf("read model metadata: %w", err)
	}
	defer metadata.Destroy()

	lookup := func(key string) (string, bool, error) {
		value, ok, err := metadata.LookupCustomMetadataMap(key)
		if err != nil {
			return "", false, fmt.Errorf("read model metadata %q: %w", key, err)
		}
		return value, ok, nil
	}

	if value, ok, err := lookup(onnx.MetadataInputSize); err != nil {
		return err
	} else if ok {
		size, err := codec.ParseSize(value)
		if err != nil {
			return fmt.Errorf("model metadata %s: %w", onnx.MetadataInputSize, err)
		}
		info.InputSize = size
	}

	for _, field := range []struct {
		key      string
		dst      *[3]float32
		positive bool
	}{
		{onnx.MetadataMean, &info.Mean, false},
		{onnx.MetadataStd, &info.Std, true},
	} {
		value, ok, err := lookup(field.key)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if *field.dst, err = parseTriple(value, field.positive); err != nil {
			return fmt.Errorf("model metadata %s: %w", field.key, err)
		}
	}

	if value, ok, err := lookup(onnx.MetadataThreshold); err != nil {
		return err
	} else if ok {
		t, err := strconv.ParseFloat(strings.TrimSpace(value), 32)
		if err != nil || !(t >= 0 && t <= 1) {
			return fmt.Errorf("model metadata %s: invalid threshold %q: expected a probability in [0,1]",
				onnx.MetadataThreshold, value)
		}
		info.Threshold = float32(t)
	}

	if value, ok, err := lookup(onnx.MetadataProvenance); err != nil {
		return err
	} else if ok {
		if !json.Valid([]byte(value)) {
			return fmt.Errorf("model metadata %s: invalid JSON %q", onnx.MetadataProvenance, value)
		}
		info.Provenance = json.RawMessage(value)
	}
	return nil
}

// parseTriple parses three comma-separated floats, "R,G,B".
func parseTriple(s string, positive bool) ([3]float32, error) {
	var v [3]float32
	parts := strings.Split(s, ",")
	if len(parts) != 3 {
		return v, fmt.Errorf("invalid value %q: expected three comma-separated numbers R,G,B", s)
	}

	for i, p := range parts {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 32)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return v, fmt.Errorf("invalid value %q: %q is not a number", s, p)
		}
		if positive && f <= 0 {
			return v, fmt.Errorf("invalid value %q: every channel must be positive", s)
		}
		v[i] = float32(f)
	}
	return v, nil
}
