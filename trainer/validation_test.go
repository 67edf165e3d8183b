package trainer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// namedSamples returns samples whose frames are 0001.png ... 000n.png.
func namedSamples(n int) []trainSample {
	samples := make([]trainSample, n)
	for i := range samples {
		samples[i] = trainSample{frame: filepath.Join("filtered", "frames", fmt.Sprintf("%04d.png", i+1))}
	}
	return samples
}

func sampleNames(samples []trainSample) []string {
	var names []string
	for _, s := range samples {
		names = append(names, filepath.Base(s.frame))
	}
	return names
}

// writeFilterRecord writes dir/filter.json for the kept frames 0001.png
// ... 000n.png with the given seed frame numbers.
func writeFilterRecord(t *testing.T, dir string, frames int, seeds []int) {
	t.Helper()
	record := FilterReport{}
	for n := 1; n <= frames; n++ {
		seed := slices.Contains(seeds, n)
		record.Frames = append(record.Frames, FilterDecision{Frame: fmt.Sprintf("%04d.png", n), Number: n,
			Seed: seed, Kept: true})
	}
	data, err := json.Marshal(record)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, filterRecordName), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSplitNearSeeds(t *testing.T) {
	cases := []struct {
		name     string
		frames   int
		seeds    []int
		fraction float64
		want     []string
	}{
		{"seed first", 20, []int{1}, 0.15, []string{"0002.png", "0003.png", "0004.png"}},
		{"seed last", 10, []int{10}, 0.2, []string{"0008.png", "0009.png"}},
		// Both neighbours of a seed in the middle, then the earlier of the
		// next two.
		{"seed in middle", 10, []int{5}, 0.3, []string{"0004.png", "0006.png", "0003.png"}},
		{"two seeds", 20, []int{1, 20}, 0.2, []string{"0002.png", "0003.png", "0018.png", "0019.png"}},
		{"only seeds", 2, []int{1, 2}, 0.5, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFilterRecord(t, dir, c.frames, c.seeds)
			distances, err := seedDistances(dir)
			if err != nil {
				t.Fatal(err)
			}
			train, validation := splitNearSeeds(namedSamples(c.frames), c.fraction, distances)

			got := sampleNames(validation)
			slices.Sort(got)
			want := slices.Clone(c.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("validation frames %v, want %v", got, want)
			}
			if len(train)+len(validation) != c.frames {
				t.Errorf("%d training and %d validation frames, want %d in all", len(train), len(validation), c.frames)
			}
			for _, name := range sampleNames(train) {
				if slices.Contains(got, name) {
					t.Errorf("frame %s is in both training and validation", name)
				}
			}
			for _, seed := range c.seeds {
				if !slices.Contains(sampleNames(train), fmt.Sprintf("%04d.png", seed)) {
					t.Errorf("seed frame %d is not in training", seed)
				}
			}
		})
	}
}

func TestSeedDistancesWithoutRecord(t *testing.T) {
	distances, err := seedDistances(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if distances != nil {
		t.Errorf("distances %v for a folder without %s, want nil", distances, filterRecordName)
	}
}

func TestSeedDistancesBadRecord(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, filterRecordName), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := seedDistances(dir); err == nil {
		t.Error("no error for a truncated filter record")
	}
}
