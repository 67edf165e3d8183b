package onnx_test

import (
	"fmt"
	"math"
	"os"
	"strings"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/medvseg/medvseg/segment"
	"github.com/medvseg/medvseg/segment/onnx"
)

func TestMain(m *testing.M) {
	if err := segment.InitRuntime(segment.LibraryPath("")); err != nil {
		fmt.Fprintf(os.Stderr, "ONNX Runtime is needed by these tests: %v\n", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// run executes a model with one input and one output in ONNX Runtime.
func run(t *testing.T, model *onnx.Model, inputShape, outputShape ort.Shape, input []float32) []float32 {
	t.Helper()

	data, err := model.Marshal()
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}

	in, err := ort.NewTensor(inputShape, input)
	if err != nil {
		t.Fatalf("input tensor %v: %v", inputShape, err)
	}
	defer in.Destroy()

	out, err := ort.NewEmptyTensor[float32](outputShape)
	if err != nil {
		t.Fatalf("output tensor %v: %v", outputShape, err)
	}
	defer out.Destroy()

	session, err := ort.NewDynamicAdvancedSessionWithONNXData(data,
		[]string{onnx.InputName}, []string{onnx.OutputName}, nil)
	if err != nil {
		t.Fatalf("create session: %v", err)
	}
	defer session.Destroy()

	if err := session.Run([]ort.Value{in}, []ort.Value{out}); err != nil {
		t.Fatalf("run with input %v: %v", inputShape, err)
	}
	return append([]float32(nil), out.GetData()...)
}

func ramp(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(i%97) / 97
	}
	return v
}

func TestColourRuleRuns(t *testing.T) {
	const w, h = 8, 4
	model, err := onnx.ColourRule(w, h)
	if err != nil {
		t.Fatal(err)
	}

	input := ramp(2 * 3 * w * h)
	logits := run(t, model, ort.NewShape(2, 3, h, w), ort.NewShape(2, 1, h, w), input)

	plane := w * h
	for n := 0; n < 2; n++ {
		for i := 0; i < plane; i++ {
			r, g := input[n*3*plane+i], input[n*3*plane+plane+i]
			want := onnx.ColourRuleGain * (float64(r) - 2*float64(g) - onnx.ColourRuleOffset)
			if got := logits[n*plane+i]; math.Abs(float64(got)-want) > 1e-5 {
				t.Fatalf("image %d pixel %d: logit %v, want %v", n, i, got, want)
			}
		}
	}
}

func TestUNetOutputShape(t *testing.T) {
	const w, h = 64, 32
	weights := onnx.RandomUNetWeights(nil, 1)
	model, err := onnx.UNet(onnx.UNetOptions{Width: w, Height: h}, weights)
	if err != nil {
		t.Fatal(err)
	}

	for _, batch := range []int64{1, 4} {
		t.Run(fmt.Sprintf("batch%d", batch), func(t *testing.T) {
			logits := run(t, model, ort.NewShape(batch, 3, h, w), ort.NewShape(batch, 1, h, w),
				ramp(int(batch)*3*w*h))

			for i, v := range logits {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Fatalf("logit %d is %v", i, v)
				}
			}
		})
	}
}

func TestUNetFoldedBatchNormMatches(t *testing.T) {
	const w, h = 32, 32
	weights := onnx.RandomUNetWeights([]int{8, 16}, 7)
	input := ramp(3 * w * h)
	shapeIn, shapeOut := ort.NewShape(1, 3, h, w), ort.NewShape(1, 1, h, w)

	plain, err := onnx.UNet(onnx.UNetOptions{Width: w, Height: h, Channels: []int{8, 16}}, weights)
	if err != nil {
		t.Fatal(err)
	}
	folded, err := onnx.UNet(onnx.UNetOptions{Width: w, Height: h, Channels: []int{8, 16},
		FoldBatchNorm: true}, weights)
	if err != nil {
		t.Fatal(err)
	}

	want := run(t, plain, shapeIn, shapeOut, input)
	got := run(t, folded, shapeIn, shapeOut, input)
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-4*(1+math.Abs(float64(want[i]))) {
			t.Fatalf("pixel %d: folded logit %v, batch-norm logit %v", i, got[i], want[i])
		}
	}
}

func TestUNetParameterNames(t *testing.T) {
	params := onnx.UNetParameters(nil)
	names := map[string][]int64{}
	for _, p := range params {
		names[p.Name] = p.Shape
	}

	cases := map[string][]int64{
		"enc1.conv1.weight":     {16, 3, 3, 3},
		"enc1.bn1.running_mean": {16},
		"enc4.conv2.weight":     {128, 128, 3, 3},
		"dec3.conv1.weight":     {64, 192, 3, 3},
		"dec1.bn2.running_var":  {16},
		"head.weight":           {1, 16, 1, 1},
		"head.bias":             {1},
	}
	for name, want := range cases {
		got, ok := names[name]
		if !ok {
			t.Errorf("parameter %q is missing", name)
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("parameter %q: shape %v, want %v", name, got, want)
		}
	}
}

func TestUNetRejectsBadWeights(t *testing.T) {
	good := func() map[string][]float32 { return onnx.RandomUNetWeights([]int{4, 8}, 1) }
	options := onnx.UNetOptions{Width: 16, Height: 16, Channels: []int{4, 8}}

	missing := good()
	delete(missing, "dec1.bn2.running_var")
	extra := good()
	extra["enc1.conv3.weight"] = []float32{1}
	short := good()
	short["head.weight"] = short["head.weight"][:2]
	tracked := good()
	tracked["enc1.bn1.num_batches_tracked"] = []float32{10}

	cases := []struct {
		name    string
		options onnx.UNetOptions
		weights map[string][]float32
		want    string
	}{
		{"missing", options, missing, "missing 1 parameters: dec1.bn2.running_var"},
		{"unknown", options, extra, "enc1.conv3.weight"},
		{"short", options, short, `"head.weight" has 2 values`},
		{"odd size", onnx.UNetOptions{Width: 15, Height: 16, Channels: []int{4, 8}}, good(),
			"multiples of 2"},
		{"num_batches_tracked ignored", options, tracked, ""},
	}
	for _, c := range cases {
		_, err := onnx.UNet(c.options, c.weights)
		if c.want == "" {
			if err != nil {
				t.Errorf("%s: unexpected error %v", c.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}

func TestGraphErrors(t *testing.T) {
	cases := []struct {
		name  string
		build func(g *onnx.Graph)
		want  string
	}{
		{"undefined input", func(g *onnx.Graph) {
			g.Input("x", 1, 3, 4, 4)
			g.Output(g.Relu("y"), "out", 1, 3, 4, 4)
		}, `input "y" is not defined`},
		{"duplicate name", func(g *onnx.Graph) {
			g.Input("x", 1, 3, 4, 4)
			g.Float32("x", []int64{1}, []float32{1})
		}, `"x" is defined twice`},
		{"short initialiser", func(g *onnx.Graph) {
			g.Float32("w", []int64{2, 3}, []float32{1, 2})
		}, "shape [2 3] needs 6 values, got 2"},
		{"conv weight rank", func(g *onnx.Graph) {
			x := g.Input("x", 1, 3, 4, 4)
			g.Conv(x, g.Float32("w", []int64{3}, []float32{1, 2, 3}), "", 1, 0)
		}, "expected an initialiser of shape [out, in, kH, kW]"},
		{"no output", func(g *onnx.Graph) {
			g.Input("x", 1, 3, 4, 4)
		}, "needs at least one input and one output"},
	}

	for _, c := range cases {
		g := onnx.NewGraph(c.name)
		c.build(g)
		_, err := (&onnx.Model{Graph: g}).Marshal()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}

func TestMetadataReadByRuntime(t *testing.T) {
	model, err := onnx.ColourRule(16, 8)
	if err != nil {
		t.Fatal(err)
	}
	data, err := model.Marshal()
	if err != nil {
		t.Fatal(err)
	}

	metadata, err := ort.GetModelMetadataWithONNXData(data)
	if err != nil {
		t.Fatalf("read metadata: %v", err)
	}
	defer metadata.Destroy()

	for key, want := range model.Metadata {
		got, ok, err := metadata.LookupCustomMetadataMap(key)
		if err != nil || !ok {
			t.Errorf("metadata %q: found %v, error %v", key, ok, err)
			continue
		}
		if got != want {
			t.Errorf("metadata %q: %q, want %q", key, got, want)
		}
	}
}
