package oneffs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// Open opens the image at path, a regular file or a block device (a disk or
// a partition such as /dev/sdb2). The sector size of a block device is the
// kernel's unless WithSectorSize says otherwise. A block device that is
// mounted or in exclusive use is refused with ErrBusy. When the image cannot
// be opened for writing it is opened read-only, and changes return
// ErrReadOnly, as in the original.
func Open(path string, opts ...Option) (*Image, error) {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	block := fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0
	if !fi.Mode().IsRegular() && !block {
		return nil, fmt.Errorf("%s: not a regular file or block device", path)
	}
	f, err := openDevice(path, block, &cfg)
	if err != nil {
		return nil, err
	}
	size, err := deviceSize(f, block)
	if err == nil && !cfg.sectorSet && block {
		cfg.sectorSize, err = blockSectorSize(f)
		cfg.sectorSet = true
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	im, err := newImage(f, size, cfg)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	im.closer = f
	return im, nil
}

func openDevice(path string, block bool, cfg *config) (*os.File, error) {
	extra := 0
	if block {
		extra = exclusiveFlag
	}
	flag := os.O_RDWR
	if cfg.readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag|extra, 0)
	if err != nil && !cfg.readOnly && (errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EROFS)) {
		cfg.readOnly = true
		f, err = os.OpenFile(path, os.O_RDONLY|extra, 0)
	}
	if errors.Is(err, syscall.EBUSY) {
		return nil, fmt.Errorf("%s: %w", path, ErrBusy)
	}
	return f, err
}

func deviceSize(f *os.File, block bool) (int64, error) {
	if block {
		return f.Seek(0, io.SeekEnd)
	}
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// MinImageSize returns the size of the smallest image that holds n bytes in
// the given format and sector size. For the classic format it is the size the
// original `oneffs create` makes.
func MinImageSize(n int64, f Format, sectorSize int) int64 {
	ss := int64(sectorSize)
	if f == FailSafe {
		return (2 + ceilDiv(n, ss-chainHeader)) * ss
	}
	return (1 + ceilDiv(n, ss)) * ss
}

// Create makes a new image file at path that holds data. The file must not
// exist. Its size is MinImageSize unless WithSize asks for more room; for
// the classic format and the minimal size, its bytes are those of the
// original `oneffs create`. On error no file is left behind.
func Create(path string, data []byte, opts ...Option) (err error) {
	cfg := config{sectorSize: DefaultSectorSize, sectorSet: true}
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.checkSectorSize(); err != nil {
		return err
	}
	ss := cfg.sectorSize
	size := MinImageSize(int64(len(data)), cfg.format, ss)
	if cfg.size != 0 {
		if cfg.size < size {
			return fmt.Errorf("%w: %d bytes need an image of at least %d bytes, not %d", ErrTooLarge, len(data), size, cfg.size)
		}
		size = cfg.size
	}
	if size%int64(ss) != 0 {
		return fmt.Errorf("%w: %d bytes is not a multiple of %d", ErrNotAligned, size, ss)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	if err := f.Truncate(size); err != nil {
		return err
	}
	im, err := newImage(f, size, cfg)
	if err != nil {
		return err
	}
	if err := im.Write(data); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// syncDir makes a new directory entry durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
