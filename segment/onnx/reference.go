package onnx

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
)

// Metadata keys that segment.Model reads from metadata_props.
const (
	// MetadataInputSize is the network input size, "WxH", for example "256x256".
	MetadataInputSize = "medvseg.input_size"
	// MetadataMean is the per-channel mean subtracted from RGB on [0,1]: "R,G,B".
	MetadataMean = "medvseg.mean"
	// MetadataStd is the per-channel standard deviation that divides RGB after the mean: "R,G,B".
	MetadataStd = "medvseg.std"
	// MetadataThreshold is the probability above which a pixel is foreground.
	MetadataThreshold = "medvseg.threshold"
	// MetadataProvenance is a JSON object describing how the model was made.
	MetadataProvenance = "medvseg.provenance"
)

// Names of the graph input and output of the reference networks.
const (
	InputName  = "image"
	OutputName = "logits"
)

// Preprocessing is the input contract that NewMetadata writes.
type Preprocessing struct {
	Width, Height int
	// Mean and Std are RGB, applied after scaling to [0,1].
	Mean, Std [3]float64
	Threshold float64
}

// NewMetadata returns the metadata_props that segment.Model reads, with
// provenance encoded as JSON.
func NewMetadata(p Preprocessing, provenance any) (map[string]string, error) {
	text, err := json.Marshal(provenance)
	if err != nil {
		return nil, fmt.Errorf("encode model provenance %v as JSON: %w", provenance, err)
	}

	triple := func(v [3]float64) string {
		return fmt.Sprintf("%g,%g,%g", v[0], v[1], v[2])
	}
	return map[string]string{
		MetadataInputSize:  fmt.Sprintf("%dx%d", p.Width, p.Height),
		MetadataMean:       triple(p.Mean),
		MetadataStd:        triple(p.Std),
		MetadataThreshold:  fmt.Sprintf("%g", p.Threshold),
		MetadataProvenance: string(text),
	}, nil
}

// Gain and offset of the colour-rule network.
const (
	ColourRuleGain   = 20
	ColourRuleOffset = 0.175
)

// ColourRule returns a one-layer network for RGB input on [0,1] (mean 0,
// std 1) whose logit at every pixel is
//
//	ColourRuleGain * (R - 2G - ColourRuleOffset)
//
// a 1x1 Conv with fixed weights. Lesions of the synthetic clip (package
// codec/synth) have R - 2G above 0.25 and tissue below 0.1, so the offset
// sits between the two and a threshold of 0.5 separates them. The input size
// is width x height, written into the metadata; the batch size is dynamic.
func ColourRule(width, height int) (*Model, error) {
	if width <= 0 || height <= 0 {
		return nil, fmt.Errorf("invalid colour-rule input size %dx%d: width and height must be positive",
			width, height)
	}

	g := NewGraph("colour_rule")
	x := g.Input(InputName, -1, 3, int64(height), int64(width))
	weight := g.Float32("rule.weight", []int64{1, 3, 1, 1},
		[]float32{ColourRuleGain, -2 * ColourRuleGain, 0})
	bias := g.Float32("rule.bias", []int64{1}, []float32{-ColourRuleGain * ColourRuleOffset})
	y := g.Conv(x, weight, bias, 1, 0)
	g.Output(y, OutputName, -1, 1, int64(height), int64(width))

	metadata, err := NewMetadata(Preprocessing{
		Width: width, Height: height, Std: [3]float64{1, 1, 1}, Threshold: 0.5,
	}, map[string]any{
		"network": "colour-rule",
		"formula": fmt.Sprintf("%g * (R - 2G - %g)", float64(ColourRuleGain), ColourRuleOffset),
	})
	if err != nil {
		return nil, err
	}

	return &Model{Graph: g, ProducerName: "medvseg", Metadata: metadata}, nil
}

// DefaultUNetChannels are the encoder widths of the U-Net, from the first
// level to the bottleneck.
var DefaultUNetChannels = []int{16, 32, 64, 128}

// BatchNormEpsilon is the epsilon of every batch normalisation in the U-Net,
// the default of torch.nn.BatchNorm2d.
const BatchNormEpsilon = 1e-5

// Parameter is a named weight tensor of a network.
type Parameter struct {
	Name  string
	Shape []int64
}

// UNetOptions sets the shape of the U-Net that UNet builds.
type UNetOptions struct {
	// Width and Height are the static input size. Both must be divisible by
	// 2^(levels-1) so that every upsampled map matches its skip connection.
	Width, Height int
	// Channels are the encoder widths per level; nil means DefaultUNetChannels.
	Channels []int
	// FoldBatchNorm folds each batch normalisation into the convolution
	// before it, which then gets a bias. The output is the same up to
	// float32 rounding.
	FoldBatchNorm bool
	// Metadata is written to the model's metadata_props.
	Metadata map[string]string
}

func unetChannels(channels []int) []int {
	if channels == nil {
		return DefaultUNetChannels
	}
	return channels
}

// UNetParameters lists the U-Net's parameters in PyTorch state_dict order
// and naming, so a torch::nn U-Net with the same module names exports by
// name. Level i (1-based) of the encoder is encI, and the decoder level that
// produces encoder level i's resolution is decI. Each is two blocks of 3x3
// convolution without bias, batch normalisation and ReLU: convK.weight,
// bnK.weight, bnK.bias, bnK.running_mean, bnK.running_var for K = 1, 2.
// The head is a 1x1 convolution to one logit channel: head.weight, head.bias.
func UNetParameters(channels []int) []Parameter {
	channels = unetChannels(channels)
	var params []Parameter

	block := func(prefix string, in, out int) {
		for k, cin := range []int{in, out} {
			conv := fmt.Sprintf("%s.conv%d", prefix, k+1)
			bn := fmt.Sprintf("%s.bn%d", prefix, k+1)
			c := int64(out)
			params = append(params,
				Parameter{conv + ".weight", []int64{c, int64(cin), 3, 3}},
				Parameter{bn + ".weight", []int64{c}},
				Parameter{bn + ".bias", []int64{c}},
				Parameter{bn + ".running_mean", []int64{c}},
				Parameter{bn + ".running_var", []int64{c}},
			)
		}
	}

	in := 3
	for i, c := range channels {
		block(fmt.Sprintf("enc%d", i+1), in, c)
		in = c
	}
	for i := len(channels) - 1; i >= 1; i-- {
		block(fmt.Sprintf("dec%d", i), channels[i]+channels[i-1], channels[i-1])
	}
	params = append(params,
		Parameter{"head.weight", []int64{1, int64(channels[0]), 1, 1}},
		Parameter{"head.bias", []int64{1}},
	)
	return params
}

// RandomUNetWeights returns weights for UNetParameters(channels) drawn from
// randomSeed: He-uniform convolutions and batch normalisations near the
// identity, so activations keep their scale through the network. They are
// meant for timing and shape tests, not for segmenting anything.
func RandomUNetWeights(channels []int, randomSeed uint64) map[string][]float32 {
	rng := rand.New(rand.NewPCG(randomSeed, 0x756e6574))
	uniform := func(lo, hi float64) float32 { return float32(lo + (hi-lo)*rng.Float64()) }

	weights := map[string][]float32{}
	for _, p := range UNetParameters(channels) {
		v := make([]float32, elementCount(p.Shape))
		lo, hi := -0.1, 0.1

		switch {
		case strings.HasSuffix(p.Name, "running_var"):
			lo, hi = 0.5, 1.5
		case strings.Contains(p.Name, ".bn") && strings.HasSuffix(p.Name, ".weight"):
			lo, hi = 0.8, 1.2
		case len(p.Shape) == 4:
			fanIn := float64(p.Shape[1] * p.Shape[2] * p.Shape[3])
			bound := math.Sqrt(6 / fanIn)
			lo, hi = -bound, bound
		}

		for i := range v {
			v[i] = uniform(lo, hi)
		}
		weights[p.Name] = v
	}
	return weights
}

// UNet builds the U-Net of UNetParameters(o.Channels) with the given weights.
// Input "image" is N x 3 x Height x Width with a dynamic batch size, output
// "logits" is N x 1 x Height x Width. Between encoder levels sits a 2x2 max
// pooling with stride 2. Each decoder level upsamples by 2 (bilinear,
// align_corners=False) and concatenates [upsampled, skip] on the channel
// axis, the upsampled map first, as the trainer's torch::nn U-Net does. weights must contain every parameter with its exact
// number of values; PyTorch's bnK.num_batches_tracked entries are ignored.
func UNet(o UNetOptions, weights map[string][]float32) (*Model, error) {
	channels := unetChannels(o.Channels)
	if err := checkUNetOptions(o, channels); err != nil {
		return nil, err
	}
	if err := checkUNetWeights(channels, weights); err != nil {
		return nil, err
	}

	g := NewGraph("unet")
	b := newUNetBuilder(g, channels, weights, o.FoldBatchNorm)
	x := g.Input(InputName, -1, 3, int64(o.Height), int64(o.Width))

	var skips []string
	for i := range channels {
		if i > 0 {
			x = g.MaxPool(x, 2, 2)
		}
		x = b.block(fmt.Sprintf("enc%d", i+1), x)
		skips = append(skips, x)
	}
	for i := len(channels) - 1; i >= 1; i-- {
		up := g.Resize(x, 2, 2)
		x = g.Concat(1, up, skips[i-1])
		x = b.block(fmt.Sprintf("dec%d", i), x)
	}

	head := g.Conv(x, b.param("head.weight"), b.param("head.bias"), 1, 0)
	g.Output(head, OutputName, -1, 1, int64(o.Height), int64(o.Width))

	if err := g.Err(); err != nil {
		return nil, fmt.Errorf("build U-Net: %w", err)
	}
	return &Model{Graph: g, ProducerName: "medvseg", Metadata: o.Metadata}, nil
}

func checkUNetOptions(o UNetOptions, channels []int) error {
	if len(channels) < 1 {
		return fmt.Errorf("invalid U-Net channels %v: need at least one level", channels)
	}
	for _, c := range channels {
		if c <= 0 {
			return fmt.Errorf("invalid U-Net channels %v: every width must be positive", channels)
		}
	}

	step := 1 << (len(channels) - 1)
	if o.Width <= 0 || o.Height <= 0 || o.Width%step != 0 || o.Height%step != 0 {
		return fmt.Errorf("invalid U-Net input size %dx%d: width and height must be positive "+
			"multiples of %d for %d levels", o.Width, o.Height, step, len(channels))
	}
	return nil
}

func checkUNetWeights(channels []int, weights map[string][]float32) error {
	known := map[string]bool{}
	var missing []string
	for _, p := range UNetParameters(channels) {
		known[p.Name] = true
		v, ok := weights[p.Name]
		if !ok {
			missing = append(missing, p.Name)
			continue
		}
		if len(v) != elementCount(p.Shape) {
			return fmt.Errorf("U-Net parameter %q has %d values: shape %v needs %d",
				p.Name, len(v), p.Shape, elementCount(p.Shape))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("U-Net weights are missing %d parameters: %s",
			len(missing), strings.Join(missing, ", "))
	}

	var unknown []string
	for name := range weights {
		if !known[name] && !strings.HasSuffix(name, ".num_batches_tracked") {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		return fmt.Errorf("U-Net weights contain parameters the network does not have: %s; "+
			"check the module names against UNetParameters", strings.Join(unknown, ", "))
	}
	return nil
}

type unetBuilder struct {
	g       *Graph
	weights map[string][]float32
	shapes  map[string][]int64
	fold    bool
}

func newUNetBuilder(g *Graph, channels []int, weights map[string][]float32, fold bool) *unetBuilder {
	b := &unetBuilder{g: g, weights: weights, shapes: map[string][]int64{}, fold: fold}
	for _, p := range UNetParameters(channels) {
		b.shapes[p.Name] = p.Shape
	}
	return b
}

func (b *unetBuilder) param(name string) string {
	return b.g.Float32(name, b.shapes[name], b.weights[name])
}

// block adds two rounds of 3x3 convolution, batch normalisation and ReLU.
func (b *unetBuilder) block(prefix, x string) string {
	for k := 1; k <= 2; k++ {
		conv := fmt.Sprintf("%s.conv%d", prefix, k)
		bn := fmt.Sprintf("%s.bn%d", prefix, k)

		if b.fold {
			weight, bias := foldBatchNorm(b.weights[conv+".weight"], b.weights[bn+".weight"],
				b.weights[bn+".bias"], b.weights[bn+".running_mean"], b.weights[bn+".running_var"])
			weightName := b.g.Float32(conv+".weight", b.shapes[conv+".weight"], weight)
			biasName := b.g.Float32(conv+".bias", b.shapes[bn+".bias"], bias)
			x = b.g.Relu(b.g.Conv(x, weightName, biasName, 1, 1))
			continue
		}

		x = b.g.Conv(x, b.param(conv+".weight"), "", 1, 1)
		x = b.g.BatchNormalization(x, b.param(bn+".weight"), b.param(bn+".bias"),
			b.param(bn+".running_mean"), b.param(bn+".running_var"), BatchNormEpsilon)
		x = b.g.Relu(x)
	}
	return x
}

// foldBatchNorm returns the weight and bias of a convolution without bias
// followed by batch normalisation, as one convolution:
// w' = w * s and b' = beta - mean * s per output channel, with
// s = gamma / sqrt(var + eps).
func foldBatchNorm(weight, gamma, beta, mean, variance []float32) ([]float32, []float32) {
	out := len(gamma)
	perChannel := len(weight) / out
	folded := make([]float32, len(weight))
	bias := make([]float32, out)

	for c := 0; c < out; c++ {
		s := float64(gamma[c]) / math.Sqrt(float64(variance[c])+BatchNormEpsilon)
		for j := 0; j < perChannel; j++ {
			folded[c*perChannel+j] = float32(float64(weight[c*perChannel+j]) * s)
		}
		bias[c] = float32(float64(beta[c]) - float64(mean[c])*s)
	}
	return folded, bias
}
