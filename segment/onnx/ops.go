package onnx

import "fmt"

// Conv adds a 2-D convolution (ONNX Conv) with the given stride and the same
// zero padding on every side. The kernel size comes from the shape of the
// weight initialiser, [out, in, kH, kW]. bias may be "" for none.
func (g *Graph) Conv(x, weight, bias string, stride, pad int) string {
	w := g.Shape(weight)
	if g.err == nil && len(w) != 4 {
		g.fail(fmt.Errorf("Conv weight %q: expected an initialiser of shape [out, in, kH, kW], got %v",
			weight, w))
	}
	if g.err != nil {
		return ""
	}

	inputs := []string{x, weight}
	if bias != "" {
		inputs = append(inputs, bias)
	}
	p := int64(pad)
	return g.Node("Conv", inputs,
		Ints("kernel_shape", w[2], w[3]),
		Ints("strides", int64(stride), int64(stride)),
		Ints("pads", p, p, p, p),
		Ints("dilations", 1, 1),
		Int("group", 1),
	)
}

// BatchNormalization adds inference-mode batch normalisation over channels:
// y = scale * (x - mean) / sqrt(variance + epsilon) + bias.
func (g *Graph) BatchNormalization(x, scale, bias, mean, variance string, epsilon float32) string {
	return g.Node("BatchNormalization", []string{x, scale, bias, mean, variance},
		Float("epsilon", epsilon))
}

// Relu adds max(x, 0).
func (g *Graph) Relu(x string) string { return g.Node("Relu", []string{x}) }

// Sigmoid adds 1 / (1 + exp(-x)).
func (g *Graph) Sigmoid(x string) string { return g.Node("Sigmoid", []string{x}) }

// Add adds the element-wise sum a + b, with NumPy broadcasting.
func (g *Graph) Add(a, b string) string { return g.Node("Add", []string{a, b}) }

// Sub adds the element-wise difference a - b, with NumPy broadcasting.
func (g *Graph) Sub(a, b string) string { return g.Node("Sub", []string{a, b}) }

// Mul adds the element-wise product a * b, with NumPy broadcasting.
func (g *Graph) Mul(a, b string) string { return g.Node("Mul", []string{a, b}) }

// MaxPool adds 2-D max pooling with a square kernel, no padding, and output
// sizes rounded down (ceil_mode 0), as torch.nn.MaxPool2d does by default.
func (g *Graph) MaxPool(x string, kernel, stride int) string {
	k, s := int64(kernel), int64(stride)
	return g.Node("MaxPool", []string{x},
		Ints("kernel_shape", k, k),
		Ints("strides", s, s),
		Ints("pads", 0, 0, 0, 0),
		Int("ceil_mode", 0),
	)
}

// Resize adds bilinear resizing of an NCHW tensor by the given scale factors
// (ONNX Resize, mode "linear", coordinate transformation "half_pixel").
// PyTorch's interpolate with mode="bilinear" and align_corners=False uses the
// same half-pixel mapping, which differs only for one-pixel outputs. No test
// here compares the two.
func (g *Graph) Resize(x string, scaleHeight, scaleWidth float32) string {
	g.counts["Resize"]++
	n := g.counts["Resize"]
	scales := g.Float32(fmt.Sprintf("Resize_%d.scales", n), []int64{4},
		[]float32{1, 1, scaleHeight, scaleWidth})

	return g.node("Resize", fmt.Sprintf("Resize_%d", n), []string{x, "", scales},
		String("mode", "linear"),
		String("coordinate_transformation_mode", "half_pixel"),
	)
}

// Concat adds the concatenation of values along axis.
func (g *Graph) Concat(axis int, values ...string) string {
	return g.Node("Concat", values, Int("axis", int64(axis)))
}
