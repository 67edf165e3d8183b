package trainer

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestRunFolderLockedWhileInUse(t *testing.T) {
	dir := t.TempDir()
	unlock, err := LockRun(dir)
	if err != nil {
		t.Fatal(err)
	}

	// flock locks belong to an open file, so a second open in this
	// process is refused as a second medvseg would be.
	_, err = LockRun(dir)
	if err == nil {
		t.Fatal("a second lock of a run folder in use succeeded, expected an error")
	}
	if pid := strconv.Itoa(os.Getpid()); !strings.Contains(err.Error(), "process "+pid) {
		t.Errorf("error %q does not name the holder, process %s", err, pid)
	}

	unlock()
	again, err := LockRun(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again()
}

func TestStalePartialsRemoved(t *testing.T) {
	dir := t.TempDir()
	stale := []string{
		filepath.Join(dir, "clips", "a", ".flows.123.partial"),
		filepath.Join(dir, ".propagate-456.partial"),
		filepath.Join(dir, "student", ".masks.789.partial"),
	}
	kept := []string{
		filepath.Join(dir, "clips", "a", "frames"),
		filepath.Join(dir, "partial"),
		filepath.Join(dir, ".hidden"),
	}
	for _, path := range append(slices.Clone(stale), kept...) {
		if err := os.MkdirAll(path, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(path, "0001.png"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	removed, err := removeStalePartials(dir)
	if err != nil {
		t.Fatal(err)
	}
	if removed != len(stale) {
		t.Errorf("removed %d folders, expected %d", removed, len(stale))
	}
	for _, path := range stale {
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("%s still exists (stat error %v), expected it removed", path, err)
		}
	}
	for _, path := range kept {
		if _, err := os.Stat(filepath.Join(path, "0001.png")); err != nil {
			t.Errorf("%s lost its file: %v", path, err)
		}
	}
}
