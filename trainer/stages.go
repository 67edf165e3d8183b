package trainer

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// stagesName is the file in the run folder that records the finished
// stages of RunPipeline.
const stagesName = "stages.json"

// stageRecord is the entry of one stage in stages.json.
type stageRecord struct {
	// Fingerprint is the hash of the stage's inputs and options, set when
	// the stage finished.
	Fingerprint string `json:"fingerprint,omitempty"`
	// Started is the fingerprint of the latest run that started the stage,
	// so an interrupted training run can resume when it matches.
	Started  string    `json:"started,omitempty"`
	Finished time.Time `json:"finished,omitzero"`
	Seconds  float64   `json:"seconds,omitempty"`
}

// stageLog is the content of RUN/stages.json: the record of every stage
// by name. Every change is written to disk at once.
type stageLog struct {
	path   string
	Stages map[string]*stageRecord `json:"stages"`
}

// openStageLog reads RUN/stages.json, or starts an empty log when the file
// does not exist.
func openStageLog(run string) (*stageLog, error) {
	l := &stageLog{path: filepath.Join(run, stagesName), Stages: map[string]*stageRecord{}}
	data, err := os.ReadFile(l.path)
	if errors.Is(err, os.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read stage log: %w", err)
	}
	if err := json.Unmarshal(data, l); err != nil {
		return nil, fmt.Errorf("read stage log %q: %w; delete it to rerun every stage", l.path, err)
	}
	if l.Stages == nil {
		l.Stages = map[string]*stageRecord{}
	}
	return l, nil
}

func (l *stageLog) record(stage string) *stageRecord {
	r, ok := l.Stages[stage]
	if !ok {
		r = &stageRecord{}
		l.Stages[stage] = r
	}
	return r
}

// done reports whether stage finished with this fingerprint.
func (l *stageLog) done(stage, fingerprint string) bool {
	r, ok := l.Stages[stage]
	return ok && r.Fingerprint == fingerprint
}

// start marks stage as started with fingerprint and no longer finished.
func (l *stageLog) start(stage, fingerprint string) error {
	r := l.record(stage)
	r.Started = fingerprint
	r.Fingerprint = ""
	r.Finished = time.Time{}
	return l.save()
}

// finish marks stage as finished with fingerprint.
func (l *stageLog) finish(stage, fingerprint string, seconds float64) error {
	r := l.record(stage)
	r.Started = fingerprint
	r.Fingerprint = fingerprint
	r.Finished = time.Now().UTC()
	r.Seconds = seconds
	return l.save()
}

func (l *stageLog) save() error {
	data, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(l.path, append(data, '\n'))
}

// fingerprint hashes the JSON encoding of parts.
func fingerprint(parts ...any) (string, error) {
	h := sha256.New()
	enc := json.NewEncoder(h)
	for _, p := range parts {
		if err := enc.Encode(p); err != nil {
			return "", fmt.Errorf("fingerprint stage inputs: %w", err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// fileStamp identifies a file by its absolute path, size and modification
// time, which changes when the file is replaced or edited.
type fileStamp struct {
	Path     string    `json:"path"`
	Size     int64     `json:"size"`
	Modified time.Time `json:"modified"`
}

func stampFile(path string) (fileStamp, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fileStamp{}, fmt.Errorf("stat %q: %w", path, err)
	}
	info, err := os.Stat(abs)
	if err != nil {
		return fileStamp{}, fmt.Errorf("stat %q: %w", path, err)
	}
	return fileStamp{Path: abs, Size: info.Size(), Modified: info.ModTime().UTC()}, nil
}

// stampFolder stamps every file of dir, in name order. A missing folder
// gives no stamps.
func stampFolder(dir string) ([]fileStamp, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %q: %w", dir, err)
	}
	var stamps []fileStamp
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		s, err := stampFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		stamps = append(stamps, s)
	}
	sort.Slice(stamps, func(i, j int) bool { return stamps[i].Path < stamps[j].Path })
	return stamps, nil
}

// hashFiles hashes the content of the files, so copies of the same seeds
// give the same fingerprint wherever they are.
func hashFiles(paths []string) (string, error) {
	h := sha256.New()
	for _, path := range paths {
		file, err := os.Open(path)
		if err != nil {
			return "", fmt.Errorf("hash %q: %w", path, err)
		}
		io.WriteString(h, filepath.Base(path)+"\n")
		_, err = io.Copy(h, file)
		file.Close()
		if err != nil {
			return "", fmt.Errorf("hash %q: %w", path, err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
