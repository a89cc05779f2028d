package queue

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// fileSystem is what the store does to the disk: the operating system's
// (osFS), or in tests a simulated disk that loses what was not synced
// when the power is cut (crash_test.go). Names are relative to the queue
// directory.
type fileSystem interface {
	OpenFile(name string, flag int, perm fs.FileMode) (file, error)
	Rename(oldname, newname string) error
	Remove(name string) error
	// ReadDir returns the names in the queue directory.
	ReadDir() ([]string, error)
	// SyncFS makes durable every write, rename and removal made in the
	// file system of the queue before it started (syncfs(2)).
	SyncFS() error
}

// file is an open file of a fileSystem.
type file interface {
	io.Reader
	io.Writer
	io.ReaderAt
	io.WriterAt
	io.Closer
	Truncate(size int64) error
	Size() (int64, error)
}

// osFS is the queue directory on disk. It keeps the directory open from
// Open on: syncfs(2) reports the write-back errors (Linux 5.8 and later)
// that happened since the descriptor it is given was opened or last
// synced, so a descriptor opened at each sync could miss some.
type osFS struct {
	dir string
	d   *os.File
}

func newOSFS(dir string) (*osFS, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("queue directory: %w", err)
	}
	return &osFS{dir: dir, d: d}, nil
}

type osFile struct{ *os.File }

func (f osFile) Size() (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func (o *osFS) OpenFile(name string, flag int, perm fs.FileMode) (file, error) {
	f, err := os.OpenFile(filepath.Join(o.dir, name), flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (o *osFS) Rename(oldname, newname string) error {
	return os.Rename(filepath.Join(o.dir, oldname), filepath.Join(o.dir, newname))
}

func (o *osFS) Remove(name string) error { return os.Remove(filepath.Join(o.dir, name)) }

func (o *osFS) ReadDir() ([]string, error) {
	entries, err := os.ReadDir(o.dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names, nil
}

func (o *osFS) SyncFS() error {
	for {
		err := unix.Syncfs(int(o.d.Fd()))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("syncfs %s: %w", o.dir, err)
		}
		return nil
	}
}
