package unet

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var testWeights = LossWeights{BCE: 1, Dice: 1, Boundary: 0.5}

func newTestModel(t testing.TB, config Config) *Model {
	t.Helper()
	if config.LearningRate == 0 {
		config.LearningRate = 1e-3
	}
	if config.Threads == 0 {
		config.Threads = 2
	}
	m, err := New(config)
	if err != nil {
		t.Fatalf("New(%+v): %v", config, err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// randomBatch returns images of noise with a brighter red square at a
// random place, and masks of that square.
func randomBatch(seed uint64, n, size int) Batch {
	rng := rand.New(rand.NewPCG(seed, 1))
	b := Batch{N: n, Height: size, Width: size,
		Images: make([]float32, n*3*size*size), Masks: make([]float32, n*size*size)}
	for i := range b.Images {
		b.Images[i] = float32(rng.NormFloat64()) / 2
	}
	for k := range n {
		x0, y0 := rng.IntN(size/2), rng.IntN(size/2)
		for y := y0; y < y0+size/3; y++ {
			for x := x0; x < x0+size/3; x++ {
				b.Masks[k*size*size+y*size+x] = 1
				b.Images[k*3*size*size+y*size+x] += 2
			}
		}
	}
	return b
}

func TestTensorNamesAndShapes(t *testing.T) {
	m := newTestModel(t, Config{Channels: []int{8, 16, 32}})

	want := map[string][]int{
		"enc1.conv1.weight":            {8, 3, 3, 3},
		"enc1.bn1.weight":              {8},
		"enc1.bn1.bias":                {8},
		"enc1.conv2.weight":            {8, 8, 3, 3},
		"enc2.conv1.weight":            {16, 8, 3, 3},
		"enc3.conv1.weight":            {32, 16, 3, 3},
		"enc3.bn2.weight":              {32},
		"dec2.conv1.weight":            {16, 48, 3, 3},
		"dec2.conv2.weight":            {16, 16, 3, 3},
		"dec1.conv1.weight":            {8, 24, 3, 3},
		"dec1.bn2.bias":                {8},
		"head.weight":                  {1, 8, 1, 1},
		"head.bias":                    {1},
		"enc1.bn1.running_mean":        {8},
		"enc1.bn1.running_var":         {8},
		"enc1.bn1.num_batches_tracked": {},
		"dec1.bn2.running_var":         {8},
	}
	buffers := map[string]bool{
		"enc1.bn1.running_mean": true, "enc1.bn1.running_var": true,
		"enc1.bn1.num_batches_tracked": true, "dec1.bn2.running_var": true,
	}

	got := map[string]TensorInfo{}
	for _, info := range m.Tensors() {
		got[info.Name] = info
	}
	for name, shape := range want {
		info, ok := got[name]
		if !ok {
			t.Errorf("%s: missing from Tensors()", name)
			continue
		}
		if !slices.Equal(info.Shape, shape) {
			t.Errorf("%s: shape %v, want %v", name, info.Shape, shape)
		}
		if info.IsBuffer != buffers[name] {
			t.Errorf("%s: IsBuffer %v, want %v", name, info.IsBuffer, buffers[name])
		}
	}

	// 3 levels: 3 encoder + 2 decoder blocks of 2 conv (1 tensor) and 2 bn
	// (2 parameters, 3 buffers), and a head with weight and bias.
	blocks := 5
	if n := len(got); n != blocks*(2+2*2+2*3)+2 {
		t.Errorf("Tensors() has %d entries, want %d", n, blocks*(2+2*2+2*3)+2)
	}
	if _, ok := got["enc1.conv1.bias"]; ok {
		t.Errorf("enc1.conv1.bias exists, but convolutions before batch norm have no bias")
	}

	tensors := m.Tensors()
	if tensors[0].Name != "enc1.conv1.weight" {
		t.Errorf("first tensor is %s, want enc1.conv1.weight", tensors[0].Name)
	}
	lastParameter := slices.IndexFunc(tensors, func(t TensorInfo) bool { return t.IsBuffer }) - 1
	if tensors[lastParameter].Name != "head.bias" {
		t.Errorf("last parameter is %s, want head.bias", tensors[lastParameter].Name)
	}
}

func TestReadWriteTensor(t *testing.T) {
	m := newTestModel(t, Config{Channels: []int{4, 8}})

	values := []float32{1, 2, 3, 4}
	if err := m.WriteTensor("enc1.bn1.weight", values); err != nil {
		t.Fatal(err)
	}
	got, err := m.ReadTensor("enc1.bn1.weight", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, values) {
		t.Errorf("enc1.bn1.weight read back %v, want %v", got, values)
	}

	if err := m.WriteTensor("enc1.bn1.num_batches_tracked", []float32{7}); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.ReadTensor("enc1.bn1.num_batches_tracked", nil); got[0] != 7 {
		t.Errorf("num_batches_tracked read back %v, want 7", got)
	}

	if _, err := m.ReadTensor("enc9.conv1.weight", nil); err == nil || !strings.Contains(err.Error(), "enc9.conv1.weight") {
		t.Errorf("ReadTensor of an unknown name: error %v, want one naming it", err)
	}
	if err := m.WriteTensor("enc1.bn1.weight", []float32{1}); err == nil {
		t.Errorf("WriteTensor with 1 value for shape [4]: no error")
	}
}

func TestThreadsSet(t *testing.T) {
	for _, threads := range []int{1, 2} {
		m := newTestModel(t, Config{Channels: []int{4, 8}, Threads: threads})
		got, err := m.Threads()
		if err != nil {
			t.Fatal(err)
		}
		if got != threads {
			t.Errorf("Threads() = %d, want %d", got, threads)
		}
	}
}

func TestForwardDeterministicInEvalMode(t *testing.T) {
	m := newTestModel(t, Config{Channels: []int{8, 16, 32}, RandomSeed: 3})
	batch := randomBatch(1, 2, 32)
	for range 3 {
		if _, _, err := m.TrainStep(batch, testWeights); err != nil {
			t.Fatal(err)
		}
	}

	first := make([]float32, 2*32*32)
	second := make([]float32, 2*32*32)
	loss1, err := m.Forward(batch, testWeights, first)
	if err != nil {
		t.Fatal(err)
	}
	loss2, err := m.Forward(batch, testWeights, second)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(first, second) {
		t.Errorf("two Forward calls gave different logits")
	}
	if loss1 != loss2 {
		t.Errorf("two Forward calls gave losses %+v and %+v", loss1, loss2)
	}

	// Evaluation mode must not update the batch norm statistics.
	before, _ := m.ReadTensor("enc1.bn1.running_mean", nil)
	noMasks := Batch{N: batch.N, Height: batch.Height, Width: batch.Width, Images: batch.Images}
	if _, err := m.Forward(noMasks, testWeights, first); err != nil {
		t.Fatal(err)
	}
	after, _ := m.ReadTensor("enc1.bn1.running_mean", nil)
	if !slices.Equal(before, after) {
		t.Errorf("Forward changed enc1.bn1.running_mean")
	}
}

func TestSameSeedSameSteps(t *testing.T) {
	run := func() []Loss {
		m := newTestModel(t, Config{Channels: []int{8, 16, 32}, RandomSeed: 11})
		var losses []Loss
		for i := range 4 {
			loss, _, err := m.TrainStep(randomBatch(uint64(i), 2, 32), testWeights)
			if err != nil {
				t.Fatal(err)
			}
			losses = append(losses, loss)
		}
		return losses
	}

	first, second := run(), run()
	if !slices.Equal(first, second) {
		t.Errorf("same random seed gave losses\n%v\n%v", first, second)
	}
}

func TestTrainStepLearnsSquares(t *testing.T) {
	m := newTestModel(t, Config{Channels: []int{8, 16, 32}, LearningRate: 3e-3})
	batch := randomBatch(5, 4, 32)

	first, _, err := m.TrainStep(batch, testWeights)
	if err != nil {
		t.Fatal(err)
	}
	var last Loss
	var dice float32
	for range 60 {
		if last, dice, err = m.TrainStep(batch, testWeights); err != nil {
			t.Fatal(err)
		}
	}
	// Fitting one fixed batch is the smallest check that gradients flow and
	// AdamW updates: the loss must fall well below its start.
	if last.BCE > first.BCE/2 {
		t.Errorf("BCE %v after 60 steps on one batch, started at %v: want below half", last.BCE, first.BCE)
	}
	if last.Total >= first.Total {
		t.Errorf("loss %v after 60 steps on one batch, started at %v: want lower", last.Total, first.Total)
	}
	if dice < 0.5 {
		t.Errorf("batch Dice %v after 60 steps on one batch, want at least 0.5", dice)
	}
}

func TestLibtorchErrorReturned(t *testing.T) {
	m := newTestModel(t, Config{Channels: []int{4, 8, 16}})
	// A 1x1 input cannot be max-pooled: libtorch raises and the shim must
	// return that as an error instead of aborting the process.
	batch := Batch{N: 1, Height: 1, Width: 1, Images: make([]float32, 3), Masks: make([]float32, 1)}
	if _, _, err := m.TrainStep(batch, testWeights); err == nil {
		t.Errorf("TrainStep on a 1x1 image: no error")
	}
}

func TestClosedModel(t *testing.T) {
	m := newTestModel(t, Config{Channels: []int{4, 8}})
	m.Close()
	m.Close()
	if _, _, err := m.TrainStep(randomBatch(1, 1, 16), testWeights); err != ErrClosed {
		t.Errorf("TrainStep after Close: %v, want ErrClosed", err)
	}
}

func TestCheckpointRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ckpt")
	batch := randomBatch(2, 2, 32)

	m := newTestModel(t, Config{Channels: []int{8, 16, 32}, RandomSeed: 1})
	for range 3 {
		if _, _, err := m.TrainStep(batch, testWeights); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Save(path, map[string]int{"epoch": 3}); err != nil {
		t.Fatal(err)
	}
	want := make([]float32, 2*32*32)
	if _, err := m.Forward(batch, testWeights, want); err != nil {
		t.Fatal(err)
	}

	loaded := newTestModel(t, Config{Channels: []int{8, 16, 32}, RandomSeed: 99})
	info, err := loaded.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(info.Meta) != `{"epoch":3}` {
		t.Errorf("metadata %s, want {\"epoch\":3}", info.Meta)
	}
	got := make([]float32, 2*32*32)
	if _, err := loaded.Forward(batch, testWeights, got); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("logits after load differ from the saved model's")
	}

	// With the AdamW moments restored, the next step is the same too.
	next, _, err := m.TrainStep(batch, testWeights)
	if err != nil {
		t.Fatal(err)
	}
	nextLoaded, _, err := loaded.TrainStep(batch, testWeights)
	if err != nil {
		t.Fatal(err)
	}
	if next != nextLoaded {
		t.Errorf("step after load: loss %+v, the saved model's next step %+v", nextLoaded, next)
	}
	a, _ := m.ReadTensor("enc2.conv1.weight", nil)
	b, _ := loaded.ReadTensor("enc2.conv1.weight", nil)
	if !slices.Equal(a, b) {
		t.Errorf("enc2.conv1.weight differs after one more step from the loaded state")
	}
}

func TestCheckpointWrongArchitecture(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "small")
	small := newTestModel(t, Config{Channels: []int{8, 16, 32}})
	if err := small.Save(path, nil); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name     string
		channels []int
		want     []string
	}{
		{"wider", []int{16, 32, 64}, []string{path, "enc1.conv1.weight", "[8 3 3 3]", "[16 3 3 3]"}},
		{"deeper", []int{8, 16, 32, 64}, []string{path, "enc4.conv1.weight", "missing"}},
		{"shallower", []int{8, 16}, []string{path, "enc3.conv1.weight", "does not exist in the model"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := newTestModel(t, Config{Channels: c.channels})
			before, _ := m.ReadTensor("enc1.conv1.weight", nil)
			_, err := m.Load(path)
			if err == nil {
				t.Fatalf("Load of a %v checkpoint into %v: no error", []int{8, 16, 32}, c.channels)
			}
			for _, s := range c.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			after, _ := m.ReadTensor("enc1.conv1.weight", nil)
			if !slices.Equal(before, after) {
				t.Errorf("a rejected Load changed enc1.conv1.weight")
			}
		})
	}
}

func TestCheckpointDamaged(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ckpt")
	m := newTestModel(t, Config{Channels: []int{4, 8}})
	if err := m.Save(path, nil); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)

	truncated := filepath.Join(dir, "truncated")
	os.WriteFile(truncated, raw[:len(raw)-4], 0o644)
	flipped := filepath.Join(dir, "flipped")
	damaged := slices.Clone(raw)
	damaged[len(damaged)-1] ^= 0xff
	os.WriteFile(flipped, damaged, 0o644)
	notCheckpoint := filepath.Join(dir, "text")
	os.WriteFile(notCheckpoint, []byte("hello world, not a checkpoint"), 0o644)

	for _, c := range []struct{ path, want string }{
		{truncated, "truncated"},
		{flipped, "CRC32"},
		{notCheckpoint, "not a medvseg U-Net checkpoint"},
		{filepath.Join(dir, "absent"), "no such file"},
	} {
		_, err := m.Load(c.path)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.path) {
			t.Errorf("Load(%s): error %v, want one naming the file and containing %q", c.path, err, c.want)
		}
	}
}

// residentBytes returns VmRSS from /proc/self/status.
func residentBytes(t testing.TB) int64 {
	file, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()

	scanner := bufio.NewScanner(file)
	for scanner.Scan() {
		fields := strings.Fields(scanner.Text())
		if len(fields) >= 2 && fields[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// peakResidentBytes returns VmHWM from /proc/self/status.
func peakResidentBytes() (int64, error) {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		fields := strings.Fields(line)
		if len(fields) >= 2 && fields[0] == "VmHWM:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/self/status")
}

func TestMemoryFlatOverSteps(t *testing.T) {
	const warmUp, steps = 30, 200
	m := newTestModel(t, Config{RandomSeed: 1})
	batch := randomBatch(3, 4, 64)
	logits := make([]float32, 4*64*64)
	path := filepath.Join(t.TempDir(), "ckpt")

	step := func() {
		if _, _, err := m.TrainStep(batch, testWeights); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Forward(batch, testWeights, logits); err != nil {
			t.Fatal(err)
		}
	}
	// measure returns RSS with the Go heap's garbage returned to the OS, so
	// what remains is libtorch's memory and the live Go heap.
	measure := func() int64 {
		debug.FreeOSMemory()
		return residentBytes(t)
	}

	for range warmUp {
		step()
	}
	if err := m.Save(path, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Load(path); err != nil {
		t.Fatal(err)
	}
	start := measure()

	var samples []string
	for i := 1; i <= steps; i++ {
		step()
		if i%50 == 0 {
			if _, err := m.Load(path); err != nil {
				t.Fatal(err)
			}
			samples = append(samples, fmt.Sprintf("%.1f", float64(measure())/(1<<20)))
		}
	}
	growth := measure() - start
	t.Logf("RSS %.1f MiB after warm-up, then every 50 steps: %s MiB; growth %.2f MiB over %d steps at 64x64, batch 4",
		float64(start)/(1<<20), strings.Join(samples, ", "), float64(growth)/(1<<20), steps)

	// One leaked logits tensor per step (4x1x64x64 float32, 64 KiB) would
	// add 12.5 MiB over 200 steps, and a leaked autograd graph far more; the
	// bound leaves room for allocator noise below that.
	const bound = 6 << 20
	if growth > bound {
		t.Errorf("RSS grew by %.1f MiB over %d steps, bound %.0f MiB", float64(growth)/(1<<20), steps, float64(bound)/(1<<20))
	}
}
