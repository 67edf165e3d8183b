package trainer

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// clipsFolder is the folder of the run with one folder per clip when the
// pipeline runs on a root of clips.
const clipsFolder = "clips"

// runClip is one clip of a pipeline run.
type runClip struct {
	// name is the clip folder's name under a root of clips, and "" when
	// the run has a single clip.
	name string
	// dir is the folder of the clip's frames, pseudo-labels, overlay and
	// scores: the run folder for a single clip, RUN/clips/<name> otherwise.
	dir string
	// data is the clip folder with frames/ and masks/, or "" for a video.
	data string
	// fingerprint is the fingerprint of the clip's stage that ran last.
	fingerprint string
}

func (c *runClip) path(elem ...string) string {
	return filepath.Join(append([]string{c.dir}, elem...)...)
}

// stageKey names a stage in stages.json and in progress reports:
// "<clip>/<stage>" for a per-clip stage under a root of clips, else stage.
func stageKey(c *runClip, stage string) string {
	if c == nil || c.name == "" {
		return stage
	}
	return c.name + "/" + stage
}

// multiClip reports whether the run is on a root of clips.
func (p *pipeline) multiClip() bool {
	return len(p.clips) > 1 || p.clips[0].name != ""
}

// pipelineClips returns the clips of a run: the video, the clip folder
// o.Data, or each clip folder of the root o.Data in name order. Under a
// root, the clips' per-clip seed and ground-truth folders must exist.
func pipelineClips(o PipelineOptions) ([]*runClip, error) {
	if o.Video != "" {
		return []*runClip{{dir: o.Out}}, nil
	}
	if isFolder(filepath.Join(o.Data, "frames")) {
		return []*runClip{{dir: o.Out, data: o.Data}}, nil
	}

	names, err := clipsBelow(o.Data, "frames")
	if err != nil || len(names) == 0 {
		// ClipFolders explains what is wrong with a path that is no clip
		// folder: missing, a file, or one level too low.
		if _, _, folderErr := ClipFolders(o.Data); folderErr != nil {
			return nil, fmt.Errorf("%w; or pass a root whose subfolders are clip folders, ROOT/<clip>/frames", folderErr)
		}
		return nil, err
	}

	if err := checkNoOtherFolders(o.Data, names); err != nil {
		return nil, err
	}

	clips := make([]*runClip, len(names))
	for i, name := range names {
		clips[i] = &runClip{name: name, dir: filepath.Join(o.Out, clipsFolder, name),
			data: filepath.Join(o.Data, name)}
	}
	for _, flag := range []struct{ name, dir string }{{"--seeds", o.Seeds}, {"--gt", o.GT}} {
		if err := checkClipSubfolders(flag.name, flag.dir, names); err != nil {
			return nil, err
		}
	}
	if o.Seeds == "" {
		for _, c := range clips {
			if !isFolder(filepath.Join(c.data, "masks")) {
				return nil, fmt.Errorf("clip %q has no masks folder for its seeds: add %q with the seed masks, or give --seeds DIR with DIR/%s/",
					c.data, filepath.Join(c.data, "masks"), c.name)
			}
		}
	}
	return clips, nil
}

// checkNoOtherFolders rejects a root that has folders besides its clips,
// such as clips nested one level deeper, so that no clip is left out of
// training without a word. Hidden folders are ignored.
func checkNoOtherFolders(root string, clips []string) error {
	entries, err := os.ReadDir(root)
	if err != nil {
		return fmt.Errorf("list %q: %w", root, err)
	}
	var others []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || slices.Contains(clips, name) || !isFolder(filepath.Join(root, name)) {
			continue
		}
		others = append(others, name)
	}
	if len(others) > 0 {
		return fmt.Errorf("--data %q: the folders %s are not clip folders (no frames/ inside), so they would be "+
			"left out: put or link each clip directly under the root as ROOT/<clip>/frames, or move them out",
			root, strings.Join(others, ", "))
	}
	return nil
}

// checkClipSubfolders checks that dir, unless it is "", has a folder for
// every clip.
func checkClipSubfolders(flag, dir string, clips []string) error {
	if dir == "" {
		return nil
	}
	var missing []string
	for _, name := range clips {
		if !isFolder(filepath.Join(dir, name)) {
			missing = append(missing, name)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("%s %q has no folder for the clips %s: under a root of clips, %s needs one folder per clip, such as %q",
		flag, dir, strings.Join(missing, ", "), flag, filepath.Join(dir, missing[0]))
}

// seedSource returns the folder and frame numbers of the seeds of clip c.
func (p *pipeline) seedSource(c *runClip) SeedSource {
	src := SeedSource{Dir: p.options.Seeds, Numbers: p.options.SeedFrames}
	switch {
	case src.Dir == "":
		src.Dir = filepath.Join(c.data, "masks")
	case c.name != "":
		src.Dir = filepath.Join(src.Dir, c.name)
	}
	return src
}

// groundTruth returns the folder of ground-truth masks of clip c, or ""
// for none.
func (p *pipeline) groundTruth(c *runClip) (string, error) {
	o := p.options
	switch {
	case o.NoGT:
		return "", nil
	case o.GT != "":
		gt := o.GT
		if c.name != "" {
			gt = filepath.Join(gt, c.name)
		}
		if !isFolder(gt) {
			return "", fmt.Errorf("--gt %q is not a folder: pass the folder of ground-truth masks", gt)
		}
		return gt, nil
	case c.data != "":
		masks := filepath.Join(c.data, "masks")
		if !isFolder(masks) {
			return "", nil
		}
		return masks, nil
	}
	return "", nil
}
