package unet

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"slices"

	"github.com/google/renameio/v2"
)

// Checkpoint file layout, all little-endian:
//
//	8 bytes   magic "MVSUNET1"
//	8 bytes   header length in bytes, uint64
//	header    JSON checkpointHeader
//	data      float32 values: every tensor in header order, then for every
//	          AdamW entry its first and then its second moment
//
// The header's CRC32 (IEEE) covers the data section.
const checkpointMagic = "MVSUNET1"

// maxHeaderBytes bounds the header read from a file before it is trusted.
const maxHeaderBytes = 64 << 20

type checkpointHeader struct {
	Channels []int             `json:"channels"`
	Tensors  []checkpointEntry `json:"tensors"`
	AdamW    []adamwEntry      `json:"adamw,omitempty"`
	DataCRC  uint32            `json:"data_crc32"`
	Meta     json.RawMessage   `json:"meta,omitempty"`
}

type checkpointEntry struct {
	Name     string `json:"name"`
	Shape    []int  `json:"shape"`
	IsBuffer bool   `json:"is_buffer,omitempty"`
}

type adamwEntry struct {
	Name string `json:"name"`
	Step int64  `json:"step"`
}

// CheckpointInfo describes a checkpoint file without loading its tensors.
type CheckpointInfo struct {
	// Channels are the encoder channels of the network that wrote it.
	Channels []int
	// Meta is the caller's JSON passed to Save, or nil.
	Meta json.RawMessage
}

// Save writes the model's parameters, buffers and AdamW state, with meta
// (any JSON-encodable value, or nil) to path. It writes a temporary file in
// the same folder and renames it, so path always holds a whole checkpoint.
func (m *Model) Save(path string, meta any) error {
	if m.handle == nil {
		return ErrClosed
	}

	header := checkpointHeader{Channels: m.channels}
	if meta != nil {
		raw, err := json.Marshal(meta)
		if err != nil {
			return fmt.Errorf("save checkpoint %q: encode metadata: %w", path, err)
		}
		header.Meta = raw
	}

	var data bytes.Buffer
	for _, t := range m.tensors {
		values, err := m.ReadTensor(t.Name, nil)
		if err != nil {
			return fmt.Errorf("save checkpoint %q: %w", path, err)
		}
		header.Tensors = append(header.Tensors, checkpointEntry{Name: t.Name, Shape: t.Shape, IsBuffer: t.IsBuffer})
		binary.Write(&data, binary.LittleEndian, values)
	}

	for _, t := range m.tensors {
		if t.IsBuffer {
			continue
		}
		state, ok, err := m.readAdamW(t.Name)
		if err != nil {
			return fmt.Errorf("save checkpoint %q: %w", path, err)
		}
		if !ok {
			continue
		}
		header.AdamW = append(header.AdamW, adamwEntry{Name: t.Name, Step: state.Step})
		binary.Write(&data, binary.LittleEndian, state.ExpAvg)
		binary.Write(&data, binary.LittleEndian, state.ExpAvgSq)
	}
	header.DataCRC = crc32.ChecksumIEEE(data.Bytes())

	if err := writeCheckpoint(path, header, data.Bytes()); err != nil {
		return fmt.Errorf("save checkpoint %q: %w", path, err)
	}
	return nil
}

func writeCheckpoint(path string, header checkpointHeader, data []byte) error {
	encoded, err := json.Marshal(header)
	if err != nil {
		return err
	}

	var b bytes.Buffer
	b.WriteString(checkpointMagic)
	binary.Write(&b, binary.LittleEndian, uint64(len(encoded)))
	b.Write(encoded)
	b.Write(data)
	// renameio writes a temporary file, syncs it and renames it into place,
	// with mode 0644 less the umask.
	return renameio.WriteFile(path, b.Bytes(), 0o644)
}

// ReadCheckpointInfo reads the header of a checkpoint file.
func ReadCheckpointInfo(path string) (CheckpointInfo, error) {
	file, err := os.Open(path)
	if err != nil {
		return CheckpointInfo{}, fmt.Errorf("read checkpoint %q: %w", path, err)
	}
	defer file.Close()

	header, err := readHeader(bufio.NewReader(file))
	if err != nil {
		return CheckpointInfo{}, fmt.Errorf("read checkpoint %q: %w", path, err)
	}
	return CheckpointInfo{Channels: header.Channels, Meta: header.Meta}, nil
}

func readHeader(r io.Reader) (checkpointHeader, error) {
	var prefix [len(checkpointMagic) + 8]byte
	if _, err := io.ReadFull(r, prefix[:]); err != nil {
		return checkpointHeader{}, fmt.Errorf("not a medvseg U-Net checkpoint: %w", err)
	}
	if string(prefix[:len(checkpointMagic)]) != checkpointMagic {
		return checkpointHeader{}, errors.New("not a medvseg U-Net checkpoint: wrong magic bytes")
	}

	size := binary.LittleEndian.Uint64(prefix[len(checkpointMagic):])
	if size > maxHeaderBytes {
		return checkpointHeader{}, fmt.Errorf("header of %d bytes is larger than %d: the file is damaged", size, maxHeaderBytes)
	}
	encoded := make([]byte, size)
	if _, err := io.ReadFull(r, encoded); err != nil {
		return checkpointHeader{}, fmt.Errorf("truncated header: %w", err)
	}

	var header checkpointHeader
	if err := json.Unmarshal(encoded, &header); err != nil {
		return checkpointHeader{}, fmt.Errorf("invalid header: %w", err)
	}
	return header, nil
}

// Load replaces the model's parameters, buffers and AdamW state with those
// in the checkpoint at path, and returns its metadata. A checkpoint of a
// different architecture is rejected before anything changes, with the
// first parameter whose name or shape differs.
func (m *Model) Load(path string) (CheckpointInfo, error) {
	if m.handle == nil {
		return CheckpointInfo{}, ErrClosed
	}

	raw, err := os.ReadFile(path)
	if err != nil {
		return CheckpointInfo{}, fmt.Errorf("load checkpoint %q: %w", path, err)
	}
	reader := bytes.NewReader(raw)
	header, err := readHeader(reader)
	if err != nil {
		return CheckpointInfo{}, fmt.Errorf("load checkpoint %q: %w", path, err)
	}
	data := raw[len(raw)-reader.Len():]

	if err := m.checkArchitecture(header); err != nil {
		return CheckpointInfo{}, fmt.Errorf("load checkpoint %q: %w", path, err)
	}
	if err := checkData(header, data); err != nil {
		return CheckpointInfo{}, fmt.Errorf("load checkpoint %q: %w", path, err)
	}
	if err := m.restore(header, data); err != nil {
		return CheckpointInfo{}, fmt.Errorf("load checkpoint %q: %w", path, err)
	}
	return CheckpointInfo{Channels: header.Channels, Meta: header.Meta}, nil
}

func (m *Model) checkArchitecture(header checkpointHeader) error {
	hint := fmt.Sprintf("the checkpoint is from a U-Net with channels %v, this model has channels %v",
		header.Channels, m.channels)

	inFile := map[string]checkpointEntry{}
	for _, e := range header.Tensors {
		inFile[e.Name] = e
	}
	for _, t := range m.tensors {
		e, ok := inFile[t.Name]
		if !ok {
			return fmt.Errorf("parameter %s is missing from the file (%s)", t.Name, hint)
		}
		if !slices.Equal(e.Shape, t.Shape) {
			return fmt.Errorf("parameter %s has shape %v in the file but %v in the model (%s)",
				t.Name, e.Shape, t.Shape, hint)
		}
	}
	for _, e := range header.Tensors {
		if _, ok := m.index[e.Name]; !ok {
			return fmt.Errorf("parameter %s in the file does not exist in the model (%s)", e.Name, hint)
		}
	}
	for _, e := range header.AdamW {
		if i, ok := m.index[e.Name]; !ok || m.tensors[i].IsBuffer {
			return fmt.Errorf("AdamW state for %s, which is not a parameter of the model (%s)", e.Name, hint)
		}
	}
	return nil
}

func checkData(header checkpointHeader, data []byte) error {
	values := 0
	for _, e := range header.Tensors {
		values += TensorInfo{Shape: e.Shape}.Len()
	}
	byName := map[string]int{}
	for _, e := range header.Tensors {
		byName[e.Name] = TensorInfo{Shape: e.Shape}.Len()
	}
	for _, e := range header.AdamW {
		values += 2 * byName[e.Name]
	}

	if len(data) != 4*values {
		return fmt.Errorf("data section has %d bytes, the header describes %d: the file is truncated or damaged",
			len(data), 4*values)
	}
	if crc := crc32.ChecksumIEEE(data); crc != header.DataCRC {
		return fmt.Errorf("data CRC32 %08x does not match the header's %08x: the file is damaged", crc, header.DataCRC)
	}
	return nil
}

func (m *Model) restore(header checkpointHeader, data []byte) error {
	next := func(n int) []float32 {
		values := make([]float32, n)
		binary.Decode(data[:4*n], binary.LittleEndian, values)
		data = data[4*n:]
		return values
	}

	for _, e := range header.Tensors {
		if err := m.WriteTensor(e.Name, next(TensorInfo{Shape: e.Shape}.Len())); err != nil {
			return err
		}
	}

	for _, e := range header.AdamW {
		n := m.tensors[m.index[e.Name]].Len()
		state := adamwState{Step: e.Step, ExpAvg: next(n), ExpAvgSq: next(n)}
		if err := m.writeAdamW(e.Name, state); err != nil {
			return err
		}
	}
	return nil
}
