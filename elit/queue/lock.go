package queue

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// LockName is the lock file in a queue directory (see Lock). Open leaves
// it alone: it is neither a temporary file nor an orphan.
const LockName = "lock"

// ErrLocked means another process holds the lock of a queue.
var ErrLocked = errors.New("locked by another process")

// Lock is the exclusive lock of a queue directory: an advisory lock
// (flock) on its lock file. The one process that holds it may clean the
// directory (Open removes temporary files) and deliver from it, or edit
// envelopes while no server runs; elit serve holds it for as long as it
// runs. The kernel releases it when the process ends, however it ends, so
// a crash leaves no stale lock. Keep the Lock reachable until Unlock: the
// garbage collector closes an unreachable file, which releases the lock.
type Lock struct{ f *os.File }

// LockDir takes the lock of the queue in dir (creating the directory and
// the lock file if needed). While another process holds it, LockDir tries
// again until wait has passed, then returns an error wrapping ErrLocked.
func LockDir(dir string, wait time.Duration) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("queue directory: %w", err)
	}
	path := filepath.Join(dir, LockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("queue lock: %w", err)
	}
	deadline := time.Now().Add(wait)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return &Lock{f: f}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("queue lock %s: %w", path, err)
		}
		if !time.Now().Before(deadline) {
			f.Close()
			return nil, fmt.Errorf("queue lock %s: %w", path, ErrLocked)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Unlock releases the lock.
func (l *Lock) Unlock() error {
	// Closing the only descriptor of the open file releases the flock.
	return l.f.Close()
}
