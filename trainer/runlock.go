package trainer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// runLockName is the lock file of a run folder. Two runs on one folder
// would read each other's checkpoints and history and mix their results.
const runLockName = ".lock"

// lockRun takes an exclusive flock on RUN/.lock and writes this process's
// id into it. The kernel drops the lock when the process ends, so a killed
// run never leaves its folder locked. It returns the function that
// releases the lock.
func lockRun(dir string) (func(), error) {
	path := filepath.Join(dir, runLockName)
	file, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open the lock file of run folder %q: %w", dir, err)
	}

	if err := unix.Flock(int(file.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		file.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			pid := strings.TrimSpace(string(holder))
			return nil, fmt.Errorf("run folder %q is in use by another medvseg (process %s): wait for it to "+
				"finish or stop it, or give another --out", dir, pid)
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
