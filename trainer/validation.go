package trainer

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
)

// filterRecordName is the record that Filter writes beside the filtered
// frames and masks.
const filterRecordName = "filter.json"

// splitNearSeeds holds out for validation the ceil(fraction*n) frames of a
// clip that are nearest a seed frame, counted in frames of the propagated
// clip, and trains on the rest. Seed frames always train, since their
// masks are the only hand-drawn ones. Among frames at the same distance,
// the earlier one is held out first.
//
// The best checkpoint is the one with the highest Dice on these frames.
// Pseudo-labels drift with the distance from the seed they were propagated
// from, and a student that trains long enough learns the drift. Validating
// on the frames farthest from a seed, as the end block of splitValidation
// does when the seed is frame 1, then rewards that student. On the
// 250-frame synth clip with one seed at frame 1, the pseudo-labels after
// frame 115 follow a lesion that has moved on (Dice 0.13 against ground
// truth). There the end block chose an epoch whose student scored Dice
// 0.688 on the ground truth of the other frames, and the frames nearest
// the seed chose one that scored 0.964 (train-offline --input-size 128
// --epochs 12 --random-seed 1; docs/results.md has the other clips). The
// held-out frames are near-duplicates of the seed frame, which trains, so
// their Dice is optimistic; only the ranking of the epochs matters here.
//
// distances maps frame file names to their distance from the nearest seed;
// frames it lacks count as the farthest.
func splitNearSeeds(clip []trainSample, fraction float64, distances map[string]int) (train, validation []trainSample) {
	if fraction <= 0 || len(clip) < 2 {
		return clip, nil
	}

	var candidates []int
	for i, s := range clip {
		if distance(distances, s) > 0 {
			candidates = append(candidates, i)
		}
	}
	sort.SliceStable(candidates, func(a, b int) bool {
		return distance(distances, clip[candidates[a]]) < distance(distances, clip[candidates[b]])
	})

	heldOut := int(math.Ceil(float64(len(clip)) * fraction))
	heldOut = min(max(heldOut, 1), len(clip)-1, len(candidates))
	isHeldOut := map[int]bool{}
	for _, i := range candidates[:heldOut] {
		isHeldOut[i] = true
	}
	for i, s := range clip {
		if isHeldOut[i] {
			validation = append(validation, s)
		} else {
			train = append(train, s)
		}
	}
	return train, validation
}

func distance(distances map[string]int, s trainSample) int {
	d, ok := distances[filepath.Base(s.frame)]
	if !ok {
		return math.MaxInt
	}
	return d
}

// seedDistances reads DIR/filter.json of a folder that Filter wrote and
// returns, for each frame name, its distance in frames from the nearest
// seed frame of the propagation. It returns nil without an error when dir
// has no filter.json or the record names no seed.
func seedDistances(dir string) (map[string]int, error) {
	path := filepath.Join(dir, filterRecordName)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read filter record: %w", err)
	}
	var record FilterReport
	if err := json.Unmarshal(data, &record); err != nil {
		return nil, fmt.Errorf("read filter record %q: %w; rerun medvseg filter to write it again", path, err)
	}

	var seeds []int
	for i, d := range record.Frames {
		if d.Seed {
			seeds = append(seeds, i)
		}
	}
	if len(seeds) == 0 {
		return nil, nil
	}
	distances := make(map[string]int, len(record.Frames))
	for i, d := range record.Frames {
		nearest := math.MaxInt
		for _, s := range seeds {
			nearest = min(nearest, abs(i-s))
		}
		distances[d.Frame] = nearest
	}
	return distances, nil
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
