package unet

import (
	"fmt"
	"os"
	"testing"
)

// BenchmarkStep measures one training step (forward, loss, backward, AdamW)
// of the default U-Net on a batch of 4, and the process's peak RSS during
// the benchmark. Run: go test ./trainer/unet/ -run '^$' -bench Step -benchtime 3x
func BenchmarkStep(b *testing.B) {
	for _, size := range []int{128, 256} {
		for _, threads := range []int{1, 2} {
			b.Run(fmt.Sprintf("size=%d/threads=%d", size, threads), func(b *testing.B) {
				benchmarkStep(b, size, threads)
			})
		}
	}
}

func benchmarkStep(b *testing.B, size, threads int) {
	// Writing 5 to clear_refs resets VmHWM, so the peak is this benchmark's.
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Logf("peak RSS is the process's since start: reset failed: %v", err)
	}

	m := newTestModel(b, Config{Threads: threads, RandomSeed: 1})
	batch := randomBatch(1, 4, size)
	if _, _, err := m.TrainStep(batch, testWeights); err != nil {
		b.Fatal(err)
	}

	b.ResetTimer()
	for range b.N {
		if _, _, err := m.TrainStep(batch, testWeights); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()

	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/step")
	peak, err := peakResidentBytes()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MiB")
}
