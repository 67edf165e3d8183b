// Package onnx builds ONNX models from Go: a graph of standard operators
// over named float32 initialisers, with named inputs and outputs, an opset
// import and metadata_props. It writes the protobuf encoding directly, so no
// generated code or Python is involved. The trainer exports its U-Net
// through it, and tests build reference networks with it.
package onnx

import (
	"errors"
	"fmt"
	"sort"

	"github.com/google/renameio/v2"
)

// DefaultOpset is the ONNX operator set version that models import when
// Model.Opset is zero. Every operator the helpers write has the semantics
// they rely on since opset 13.
const DefaultOpset = 17

// Graph is an ONNX graph under construction. Its methods record the first
// error and turn later calls into no-ops, so a sequence of calls needs one
// check of Err (or of Model.Marshal) at the end.
type Graph struct {
	name         string
	nodes        []node
	initializers []tensor
	inputs       []valueInfo
	outputs      []valueInfo

	// shapes maps every defined value to its shape when known: inputs and
	// initialisers. Node outputs are defined with a nil shape.
	shapes map[string][]int64
	counts map[string]int
	err    error
}

type node struct {
	op         string
	name       string
	inputs     []string
	outputs    []string
	attributes []Attribute
}

type tensor struct {
	name     string
	dims     []int64
	float32s []float32
	int64s   []int64
}

type valueInfo struct {
	name     string
	dims     []int64
	dimNames []string
}

// Attribute is a named node attribute of type float, int, string, floats or ints.
type Attribute struct {
	Name   string
	kind   int
	floats []float32
	ints   []int64
	text   string
}

// Float returns a float attribute.
func Float(name string, v float32) Attribute {
	return Attribute{Name: name, kind: attributeTypeFloat, floats: []float32{v}}
}

// Int returns an int attribute.
func Int(name string, v int64) Attribute {
	return Attribute{Name: name, kind: attributeTypeInt, ints: []int64{v}}
}

// String returns a string attribute.
func String(name, v string) Attribute {
	return Attribute{Name: name, kind: attributeTypeString, text: v}
}

// Floats returns a floats attribute.
func Floats(name string, v ...float32) Attribute {
	return Attribute{Name: name, kind: attributeTypeFloats, floats: v}
}

// Ints returns an ints attribute.
func Ints(name string, v ...int64) Attribute {
	return Attribute{Name: name, kind: attributeTypeInts, ints: v}
}

// NewGraph returns an empty graph.
func NewGraph(name string) *Graph {
	return &Graph{name: name, shapes: map[string][]int64{}, counts: map[string]int{}}
}

// Err returns the first error recorded while building the graph.
func (g *Graph) Err() error { return g.err }

func (g *Graph) fail(err error) {
	if g.err == nil {
		g.err = err
	}
}

func (g *Graph) define(name string, shape []int64) bool {
	if g.err != nil {
		return false
	}
	if name == "" {
		g.fail(errors.New("graph value with an empty name"))
		return false
	}
	if _, ok := g.shapes[name]; ok {
		g.fail(fmt.Errorf("graph value %q is defined twice: names must be unique", name))
		return false
	}
	g.shapes[name] = shape
	return true
}

// Shape returns the shape of an input or initialiser, or nil for a node
// output or an unknown name.
func (g *Graph) Shape(name string) []int64 {
	return g.shapes[name]
}

// Input declares a float32 graph input. A negative dimension is dynamic and
// gets the symbolic name NAME_dimI.
func (g *Graph) Input(name string, dims ...int64) string {
	if !g.define(name, dims) {
		return name
	}
	g.inputs = append(g.inputs, newValueInfo(name, dims))
	return name
}

// Output declares value as a float32 graph output called name, with an
// Identity node in between when the two names differ.
func (g *Graph) Output(value, name string, dims ...int64) {
	if value != name {
		g.node("Identity", name, []string{value})
	}
	if g.err != nil {
		return
	}
	g.outputs = append(g.outputs, newValueInfo(name, dims))
}

func newValueInfo(name string, dims []int64) valueInfo {
	v := valueInfo{name: name, dims: dims, dimNames: make([]string, len(dims))}
	for i, d := range dims {
		if d < 0 {
			v.dimNames[i] = fmt.Sprintf("%s_dim%d", name, i)
		}
	}
	return v
}

// Float32 adds a float32 initialiser (a constant tensor) in row-major order.
func (g *Graph) Float32(name string, dims []int64, data []float32) string {
	if g.err == nil && elementCount(dims) != len(data) {
		g.fail(fmt.Errorf("initialiser %q: shape %v needs %d values, got %d",
			name, dims, elementCount(dims), len(data)))
	}
	if !g.define(name, dims) {
		return name
	}
	g.initializers = append(g.initializers, tensor{name: name, dims: dims, float32s: data})
	return name
}

// Int64 adds an int64 initialiser in row-major order.
func (g *Graph) Int64(name string, dims []int64, data []int64) string {
	if g.err == nil && elementCount(dims) != len(data) {
		g.fail(fmt.Errorf("initialiser %q: shape %v needs %d values, got %d",
			name, dims, elementCount(dims), len(data)))
	}
	if !g.define(name, dims) {
		return name
	}
	g.initializers = append(g.initializers, tensor{name: name, dims: dims, int64s: data})
	return name
}

func elementCount(dims []int64) int {
	n := 1
	for _, d := range dims {
		n *= int(d)
	}
	return n
}

// Node adds a node of the standard ONNX domain with one output and returns
// the output's name, which is generated from the operator name. An empty
// input name stands for an omitted optional input.
func (g *Graph) Node(op string, inputs []string, attributes ...Attribute) string {
	g.counts[op]++
	return g.node(op, fmt.Sprintf("%s_%d", op, g.counts[op]), inputs, attributes...)
}

// NamedNode is Node with a chosen output name, which also names the node.
func (g *Graph) NamedNode(op, output string, inputs []string, attributes ...Attribute) string {
	return g.node(op, output, inputs, attributes...)
}

func (g *Graph) node(op, output string, inputs []string, attributes ...Attribute) string {
	if g.err != nil {
		return output
	}
	for _, in := range inputs {
		if _, ok := g.shapes[in]; in != "" && !ok {
			g.fail(fmt.Errorf("%s node %q: input %q is not defined before it", op, output, in))
			return output
		}
	}
	if !g.define(output, nil) {
		return output
	}

	g.nodes = append(g.nodes, node{
		op: op, name: output, inputs: inputs, outputs: []string{output}, attributes: attributes,
	})
	return output
}

// Model is an ONNX model: a graph, the opset it imports and its metadata.
type Model struct {
	Graph *Graph
	// Opset is the version of the default ONNX operator set; 0 means DefaultOpset.
	Opset           int64
	ProducerName    string
	ProducerVersion string
	DocString       string
	// Metadata is written to metadata_props, sorted by key.
	Metadata map[string]string
}

// Marshal returns the model in the ONNX protobuf encoding, or the first
// error recorded while building its graph.
func (m *Model) Marshal() ([]byte, error) {
	if m.Graph == nil {
		return nil, errors.New("ONNX model has no graph")
	}
	if err := m.Graph.Err(); err != nil {
		return nil, fmt.Errorf("build ONNX graph %q: %w", m.Graph.name, err)
	}
	if len(m.Graph.inputs) == 0 || len(m.Graph.outputs) == 0 {
		return nil, fmt.Errorf("ONNX graph %q needs at least one input and one output", m.Graph.name)
	}

	opset := m.Opset
	if opset == 0 {
		opset = DefaultOpset
	}

	var b []byte
	b = appendInt(b, modelIRVersion, irVersion)
	if m.ProducerName != "" {
		b = appendString(b, modelProducerName, m.ProducerName)
	}
	if m.ProducerVersion != "" {
		b = appendString(b, modelProducerVersion, m.ProducerVersion)
	}
	if m.DocString != "" {
		b = appendString(b, modelDocString, m.DocString)
	}
	b = appendBytes(b, modelGraph, encodeGraph(m.Graph))

	var opsetID []byte
	opsetID = appendString(opsetID, opsetDomain, "")
	opsetID = appendInt(opsetID, opsetVersion, opset)
	b = appendBytes(b, modelOpsetImport, opsetID)

	keys := make([]string, 0, len(m.Metadata))
	for k := range m.Metadata {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var entry []byte
		entry = appendString(entry, entryKey, k)
		entry = appendString(entry, entryValue, m.Metadata[k])
		b = appendBytes(b, modelMetadataProps, entry)
	}

	return b, nil
}

// WriteFile writes the model to path. The file appears under its name only
// when it is complete.
func (m *Model) WriteFile(path string) error {
	data, err := m.Marshal()
	if err != nil {
		return err
	}
	if err := renameio.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("write ONNX model %q: %w", path, err)
	}
	return nil
}
