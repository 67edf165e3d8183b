package trainer

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestRunFolderLockedWhileInUse(t *testing.T) {
	dir := t.TempDir()
	unlock, err := lockRun(dir)
	if err != nil {
		t.Fatal(err)
	}

	// flock locks belong to an open file, so a second open in this
	// process is refused as a second medvseg would be.
	_, err = lockRun(dir)
	if err == nil {
		t.Fatal("a second lock of a run folder in use succeeded, expected an error")
	}
	if pid := strconv.Itoa(os.Getpid()); !strings.Contains(err.Error(), "process "+pid) {
		t.Errorf("error %q does not name the holder, process %s", err, pid)
	}

	unlock()
	again, err := lockRun(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again()
}
