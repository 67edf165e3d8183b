package trainer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/renameio/v2"

	"github.com/medvseg/medvseg/codec"
)

// ClipFrame is one frame file of a clip.
type ClipFrame struct {
	// Path is the path of the PNG file.
	Path string
	// Name is the file name, which pseudo-labels and filtered masks reuse.
	Name string
	// Number is the frame number in the name (codec.FrameNumber), or -1
	// when the name has no digits.
	Number int
}

// Clip is the PNG frames of one folder in name order, which is the order
// that propagation runs in.
type Clip struct {
	// Dir is the folder of the frame files.
	Dir string
	// Frames are the frame files sorted by name.
	Frames []ClipFrame

	byNumber map[int]int // frame number -> index in Frames, -1 when two frames share it
}

// OpenClip lists the PNG frames of dir. A clip needs at least two frames.
func OpenClip(dir string) (*Clip, error) {
	entries, err := codec.ListSequence(dir)
	if err != nil {
		return nil, err
	}
	if len(entries) < 2 {
		return nil, fmt.Errorf("clip %q has %d PNG frames: propagation needs at least 2", dir, len(entries))
	}

	c := &Clip{Dir: dir, byNumber: map[int]int{}}
	for i, e := range entries {
		name := filepath.Base(e.Path)
		number, ok := codec.FrameNumber(name)
		if !ok {
			number = -1
		}
		c.Frames = append(c.Frames, ClipFrame{Path: e.Path, Name: name, Number: number})
		if !ok {
			continue
		}
		if _, dup := c.byNumber[number]; dup {
			c.byNumber[number] = -1
		} else {
			c.byNumber[number] = i
		}
	}
	return c, nil
}

// Index returns the index in c.Frames of the frame with the given number.
// A number that no frame has, or that two frames share ("7.png" and
// "0007.png"), is an error that names the clip.
func (c *Clip) Index(number int) (int, error) {
	i, ok := c.byNumber[number]
	if !ok {
		return 0, fmt.Errorf("no frame of %q has number %d (frames %s to %s): check the number in the mask's name",
			c.Dir, number, c.Frames[0].Name, c.Frames[len(c.Frames)-1].Name)
	}
	if i < 0 {
		return 0, fmt.Errorf("two frames of %q have number %d: rename one", c.Dir, number)
	}
	return i, nil
}

// ClipFolders returns the frames folder and the masks folder of a clip
// folder laid out as DIR/frames/NAME.png and DIR/masks/NAME.png. The masks
// folder may be missing. A path one level too high (a root of clips) or too
// low (the frames folder itself) is an error that names the folder to pass.
func ClipFolders(dir string) (frames, masks string, err error) {
	frames, err = subfolder(dir, "frames", "--data")
	if err != nil {
		return "", "", err
	}
	return frames, filepath.Join(dir, "masks"), nil
}

// RunFolders returns the frames and seeds folders of a run folder laid out
// as DIR/frames and DIR/seeds, with the same checks as ClipFolders.
func RunFolders(dir string) (frames, seeds string, err error) {
	frames, err = subfolder(dir, "frames", "--run")
	if err != nil {
		return "", "", err
	}
	seeds = filepath.Join(dir, "seeds")
	if !isFolder(seeds) {
		return "", "", fmt.Errorf("run folder %q has no seeds folder: expected the seed masks in %q", dir, seeds)
	}
	return frames, seeds, nil
}

// subfolder returns dir/name when it is a folder, and otherwise an error
// that guesses which folder the user meant to pass with flag.
func subfolder(dir, name, flag string) (string, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("%s %q: %w", flag, dir, err)
	}
	if !info.IsDir() {
		return "", fmt.Errorf("%s %q is not a folder: pass the folder that contains %s/", flag, dir, name)
	}

	want := filepath.Join(dir, name)
	if isFolder(want) {
		return want, nil
	}

	clean := filepath.Clean(dir)
	if filepath.Base(clean) == name || isFolder(filepath.Join(filepath.Dir(clean), name)) {
		return "", fmt.Errorf("%s %q is one level too low: pass its parent %s %q, which contains %s/",
			flag, dir, flag, filepath.Dir(clean), name)
	}

	clips, err := clipsBelow(dir, name)
	if err != nil {
		return "", err
	}
	if len(clips) > 0 {
		return "", fmt.Errorf("%s %q is one level too high: it contains the clips %s; pass one of them, for example %s %q",
			flag, dir, strings.Join(clips, ", "), flag, filepath.Join(dir, clips[0]))
	}
	return "", fmt.Errorf("%s %q has no %s folder: expected the frame PNGs in %q", flag, dir, name, want)
}

// clipsBelow returns the names of the subfolders of dir that contain a
// folder called name.
func clipsBelow(dir, name string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list %q: %w", dir, err)
	}
	var clips []string
	for _, e := range entries {
		// isFolder follows symbolic links, so a root may link to clips
		// stored elsewhere.
		if isFolder(filepath.Join(dir, e.Name(), name)) {
			clips = append(clips, e.Name())
		}
	}
	sort.Strings(clips)
	return clips, nil
}

func isFolder(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.IsDir()
}

// stagedFolder writes files into a hidden folder next to its final path and
// moves it there on commit, so a failed run leaves the earlier folder as it
// was. codec.SequenceWriter does the same but names files by frame number,
// and pseudo-labels keep the frame's own name.
type stagedFolder struct {
	final   string
	staging string
}

func newStagedFolder(final string) (*stagedFolder, error) {
	parent := filepath.Dir(filepath.Clean(final))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("create output folder %q: %w; choose a folder you can write to", parent, err)
	}
	staging, err := os.MkdirTemp(parent, "."+filepath.Base(final)+".*.partial")
	if err == nil {
		// MkdirTemp creates the folder private to its owner.
		err = os.Chmod(staging, 0o755)
	}
	if err != nil {
		return nil, fmt.Errorf("create output folder %q: %w; choose a folder you can write to", final, err)
	}
	return &stagedFolder{final: final, staging: staging}, nil
}

// path returns where the file name goes before the commit.
func (s *stagedFolder) path(name string) string {
	return filepath.Join(s.staging, name)
}

// commit replaces the final folder with the staged one. An earlier folder
// is moved aside first and removed only once the new one is in place.
func (s *stagedFolder) commit() error {
	if s.staging == "" {
		return errors.New("staged folder already committed or aborted")
	}
	old := ""
	if _, err := os.Stat(s.final); err == nil {
		old = s.staging + ".old"
		if err := os.Rename(s.final, old); err != nil {
			return fmt.Errorf("replace folder %q: %w", s.final, err)
		}
	}
	if err := os.Rename(s.staging, s.final); err != nil {
		if old != "" {
			os.Rename(old, s.final)
		}
		return fmt.Errorf("replace folder %q: %w", s.final, err)
	}
	s.staging = ""
	if old != "" {
		os.RemoveAll(old)
	}
	return nil
}

// abort removes the staged folder unless it was committed. It does nothing
// on a nil folder.
func (s *stagedFolder) abort() {
	if s != nil && s.staging != "" {
		os.RemoveAll(s.staging)
		s.staging = ""
	}
}

// writeFileAtomic writes data to a temporary file beside path and renames
// it into place, with mode 0644 less the umask.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write %q: %w", path, err)
	}
	if err := renameio.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("write %q: %w", path, err)
	}
	return nil
}
