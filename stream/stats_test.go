package stream

import (
	"testing"
	"time"
)

func TestLatencyWindowSummary(t *testing.T) {
	w := NewLatencyWindow(100)
	start := time.Unix(1000, 0)
	for i := 1; i <= 100; i++ {
		w.Record(&Timestamps{
			Captured: start,
			Decoded:  start.Add(time.Duration(i) * time.Millisecond),
		})
	}

	summary := w.Summary()
	decoded, ok := summary[StageDecoded]
	if !ok {
		t.Fatal("no summary for the decoded stage")
	}
	if decoded.Count != 100 {
		t.Errorf("count %d, expected 100", decoded.Count)
	}
	if decoded.P50 != 50*time.Millisecond {
		t.Errorf("p50 %v, expected 50ms", decoded.P50)
	}
	if decoded.P95 != 95*time.Millisecond {
		t.Errorf("p95 %v, expected 95ms", decoded.P95)
	}
	if decoded.Max != 100*time.Millisecond {
		t.Errorf("max %v, expected 100ms", decoded.Max)
	}
	if _, ok := summary[StageEncoded]; ok {
		t.Error("summary has the encoded stage, which no frame passed")
	}
}

func TestLatencyWindowKeepsRecentSamples(t *testing.T) {
	w := NewLatencyWindow(10)
	start := time.Unix(1000, 0)
	for i := 1; i <= 30; i++ {
		w.Record(&Timestamps{Captured: start, Decoded: start.Add(time.Duration(i) * time.Millisecond)})
	}

	decoded := w.Summary()[StageDecoded]
	if decoded.Count != 10 {
		t.Errorf("count %d, expected the window size 10", decoded.Count)
	}
	if decoded.P50 < 21*time.Millisecond {
		t.Errorf("p50 %v, expected only the last 10 samples (21-30ms)", decoded.P50)
	}
}
