package trainer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// runLockName is the lock file of a run folder. Two runs on one folder
// would read each other's checkpoints and history and mix their results.
const runLockName = ".lock"

// LockRun takes an exclusive flock on RUN/.lock and writes this process's
// id into it. The kernel drops the lock when the process ends, so a killed
// run never leaves its folder locked. It returns the function that
// releases the lock.
func LockRun(dir string) (func(), error) {
	path := filepath.Join(dir, runLockName)
	file, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open the lock file of run folder %q: %w", dir, err)
	}

	if err := unix.Flock(int(file.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		file.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			holderName := "another process"
			if pid := strings.TrimSpace(string(holder)); pid != "" {
				holderName = "another medvseg (process " + pid + ")"
			}
			return nil, fmt.Errorf("run folder %q is in use by %s: wait for it to finish or stop it, "+
				"or use another run folder", dir, holderName)
		}
		return nil, fmt.Errorf("lock run folder %q: %w", dir, err)
	}

	if err := file.Truncate(0); err == nil {
		file.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() {
		unix.Flock(int(file.Fd()), unix.LOCK_UN)
		file.Close()
	}, nil
}

// removeStalePartials deletes the hidden *.partial folders that an
// interrupted stage left in the run folder: stages build their outputs in
// such folders and rename them when complete. The caller must hold the
// run folder's lock, so no other run is writing one. It returns the number
// removed.
func removeStalePartials(dir string) (int, error) {
	removed := 0
	err := filepath.WalkDir(dir, func(path string, entry fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := entry.Name()
		if !entry.IsDir() || path == dir || !strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".partial") {
			return nil
		}
		if err := os.RemoveAll(path); err != nil {
			return fmt.Errorf("remove the unfinished output %q: %w", path, err)
		}
		removed++
		return filepath.SkipDir
	})
	return removed, err
}
