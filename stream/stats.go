package stream

import (
	"slices"
	"sync"
	"time"

	"gonum.org/v1/gonum/stat"
)

// Stage names a step of the loop whose latency is measured from the moment
// the frame was captured.
type Stage string

// Stages measured for every frame.
const (
	StageDecoded   Stage = "decoded"
	StageSegmented Stage = "segmented"
	StageRendered  Stage = "rendered"
	StageEncoded   Stage = "encoded"
)

// StageDisplayed is the glass-to-glass latency: capture until a viewer's
// page displayed the frame. The page measures it, so it is not in Stages.
const StageDisplayed Stage = "displayed"

// Stages lists the stages in pipeline order.
var Stages = []Stage{StageDecoded, StageSegmented, StageRendered, StageEncoded}

// LatencySummary is the distribution of one stage's latency.
type LatencySummary struct {
	Count int
	P50   time.Duration
	P95   time.Duration
	Max   time.Duration
}

// LatencyWindow keeps the most recent latencies of each stage, up to a fixed
// count, and summarises them. It is safe for concurrent use.
type LatencyWindow struct {
	mu      sync.Mutex
	size    int
	samples map[Stage][]float64 // seconds, used as a ring once full
	next    map[Stage]int
}

// NewLatencyWindow keeps up to size samples per stage.
func NewLatencyWindow(size int) *LatencyWindow {
	return &LatencyWindow{size: max(size, 1), samples: map[Stage][]float64{}, next: map[Stage]int{}}
}

// Record adds the latency of each stage the frame passed, from its capture time.
func (w *LatencyWindow) Record(t *Timestamps) {
	w.mu.Lock()
	defer w.mu.Unlock()

	for _, stage := range Stages {
		at := t.at(stage)
		if at.IsZero() || t.Captured.IsZero() {
			continue
		}
		w.add(stage, at.Sub(t.Captured).Seconds())
	}
}

// Add records one latency of stage, for a stage that Timestamps does not
// hold, such as StageDisplayed.
func (w *LatencyWindow) Add(stage Stage, latency time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.add(stage, latency.Seconds())
}

func (w *LatencyWindow) add(stage Stage, seconds float64) {
	s := w.samples[stage]
	if len(s) < w.size {
		w.samples[stage] = append(s, seconds)
		return
	}
	s[w.next[stage]] = seconds
	w.next[stage] = (w.next[stage] + 1) % w.size
}

// Summary returns the distribution of each stage that has samples.
func (w *LatencyWindow) Summary() map[Stage]LatencySummary {
	w.mu.Lock()
	defer w.mu.Unlock()

	out := make(map[Stage]LatencySummary, len(w.samples))
	for stage, samples := range w.samples {
		sorted := slices.Clone(samples)
		slices.Sort(sorted)
		out[stage] = LatencySummary{
			Count: len(sorted),
			P50:   seconds(stat.Quantile(0.5, stat.Empirical, sorted, nil)),
			P95:   seconds(stat.Quantile(0.95, stat.Empirical, sorted, nil)),
			Max:   seconds(sorted[len(sorted)-1]),
		}
	}
	return out
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func (t *Timestamps) at(stage Stage) time.Time {
	switch stage {
	case StageDecoded:
		return t.Decoded
	case StageSegmented:
		return t.Segmented
	case StageRendered:
		return t.Rendered
	case StageEncoded:
		return t.Encoded
	}
	return time.Time{}
}
