package onnx

import (
	"encoding/binary"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers and enum values of the ONNX protobuf schema, taken from
// onnx/onnx.proto in github.com/onnx/onnx. Protobuf field numbers are never
// reused, so they are valid for every IR version. Only the fields this
// package writes are listed.
const (
	// ModelProto
	modelIRVersion       protowire.Number = 1
	modelProducerName    protowire.Number = 2
	modelProducerVersion protowire.Number = 3
	modelDocString       protowire.Number = 6
	modelGraph           protowire.Number = 7
	modelOpsetImport     protowire.Number = 8
	modelMetadataProps   protowire.Number = 14

	// OperatorSetIdProto
	opsetDomain  protowire.Number = 1
	opsetVersion protowire.Number = 2

	// StringStringEntryProto
	entryKey   protowire.Number = 1
	entryValue protowire.Number = 2

	// GraphProto
	graphNode        protowire.Number = 1
	graphName        protowire.Number = 2
	graphInitializer protowire.Number = 5
	graphInput       protowire.Number = 11
	graphOutput      protowire.Number = 12

	// NodeProto
	nodeInput     protowire.Number = 1
	nodeOutput    protowire.Number = 2
	nodeName      protowire.Number = 3
	nodeOpType    protowire.Number = 4
	nodeAttribute protowire.Number = 5

	// AttributeProto
	attributeName   protowire.Number = 1
	attributeF      protowire.Number = 2
	attributeI      protowire.Number = 3
	attributeS      protowire.Number = 4
	attributeFloats protowire.Number = 7
	attributeInts   protowire.Number = 8
	attributeType   protowire.Number = 20

	// TensorProto
	tensorDims     protowire.Number = 1
	tensorDataType protowire.Number = 2
	tensorName     protowire.Number = 8
	tensorRawData  protowire.Number = 9

	// ValueInfoProto
	valueInfoName protowire.Number = 1
	valueInfoType protowire.Number = 2

	// TypeProto and TypeProto.Tensor
	typeTensorType  protowire.Number = 1
	tensorTypeElem  protowire.Number = 1
	tensorTypeShape protowire.Number = 2
	shapeDim        protowire.Number = 1 // TensorShapeProto.dim
	dimensionValue  protowire.Number = 1 // TensorShapeProto.Dimension.dim_value
	dimensionParam  protowire.Number = 2 // TensorShapeProto.Dimension.dim_param
)

// AttributeProto.AttributeType values.
const (
	attributeTypeFloat  = 1
	attributeTypeInt    = 2
	attributeTypeString = 3
	attributeTypeFloats = 6
	attributeTypeInts   = 7
)

// TensorProto.DataType values.
const (
	dataTypeFloat = 1
	dataTypeInt64 = 7
)

// irVersion is the ONNX IR version written into every model: version 8 is
// the one that ONNX 1.12 writes together with opset 17 (DefaultOpset).
const irVersion = 8

func appendString(b []byte, field protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, field, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendBytes(b []byte, field protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, field, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendInt(b []byte, field protowire.Number, v int64) []byte {
	b = protowire.AppendTag(b, field, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(v))
}

func appendFloat(b []byte, field protowire.Number, v float32) []byte {
	b = protowire.AppendTag(b, field, protowire.Fixed32Type)
	return protowire.AppendFixed32(b, math.Float32bits(v))
}

func encodeAttribute(a Attribute) []byte {
	var b []byte
	b = appendString(b, attributeName, a.Name)

	switch a.kind {
	case attributeTypeFloat:
		b = appendFloat(b, attributeF, a.floats[0])
	case attributeTypeInt:
		b = appendInt(b, attributeI, a.ints[0])
	case attributeTypeString:
		b = appendString(b, attributeS, a.text)
	case attributeTypeFloats:
		for _, v := range a.floats {
			b = appendFloat(b, attributeFloats, v)
		}
	case attributeTypeInts:
		for _, v := range a.ints {
			b = appendInt(b, attributeInts, v)
		}
	}

	return appendInt(b, attributeType, int64(a.kind))
}

func encodeNode(n node) []byte {
	var b []byte
	for _, in := range n.inputs {
		b = appendString(b, nodeInput, in)
	}
	for _, out := range n.outputs {
		b = appendString(b, nodeOutput, out)
	}
	b = appendString(b, nodeName, n.name)
	b = appendString(b, nodeOpType, n.op)
	for _, a := range n.attributes {
		b = appendBytes(b, nodeAttribute, encodeAttribute(a))
	}
	return b
}

// encodeTensor writes the tensor's elements as raw_data, which onnx.proto
// defines as fixed-width little-endian values.
func encodeTensor(t tensor) []byte {
	var b []byte
	for _, d := range t.dims {
		b = appendInt(b, tensorDims, d)
	}

	var raw []byte
	if t.int64s != nil {
		b = appendInt(b, tensorDataType, dataTypeInt64)
		raw = make([]byte, 0, 8*len(t.int64s))
		for _, v := range t.int64s {
			raw = binary.LittleEndian.AppendUint64(raw, uint64(v))
		}
	} else {
		b = appendInt(b, tensorDataType, dataTypeFloat)
		raw = make([]byte, 0, 4*len(t.float32s))
		for _, v := range t.float32s {
			raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
		}
	}

	b = appendString(b, tensorName, t.name)
	return appendBytes(b, tensorRawData, raw)
}

// encodeValueInfo writes a float32 tensor type. A negative dimension
// becomes a named symbolic dimension.
func encodeValueInfo(v valueInfo) []byte {
	var shape []byte
	for i, d := range v.dims {
		var dim []byte
		if d < 0 {
			dim = appendString(dim, dimensionParam, v.dimNames[i])
		} else {
			dim = appendInt(dim, dimensionValue, d)
		}
		shape = appendBytes(shape, shapeDim, dim)
	}

	var tensorType []byte
	tensorType = appendInt(tensorType, tensorTypeElem, dataTypeFloat)
	tensorType = appendBytes(tensorType, tensorTypeShape, shape)

	var typeProto []byte
	typeProto = appendBytes(typeProto, typeTensorType, tensorType)

	var b []byte
	b = appendString(b, valueInfoName, v.name)
	return appendBytes(b, valueInfoType, typeProto)
}

func encodeGraph(g *Graph) []byte {
	var b []byte
	for _, n := range g.nodes {
		b = appendBytes(b, graphNode, encodeNode(n))
	}
	b = appendString(b, graphName, g.name)
	for _, t := range g.initializers {
		b = appendBytes(b, graphInitializer, encodeTensor(t))
	}
	for _, v := range g.inputs {
		b = appendBytes(b, graphInput, encodeValueInfo(v))
	}
	for _, v := range g.outputs {
		b = appendBytes(b, graphOutput, encodeValueInfo(v))
	}
	return b
}
