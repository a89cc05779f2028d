package oneffs

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// DefaultSectorSize is the sector size used for regular files when no
// WithSectorSize option is given, as in the original CLI (-b 512).
const DefaultSectorSize = 512

// MinSectorSize is the smallest sector size the classic format works with:
// the header must fit in sector 0 (spec §5, connect).
const MinSectorSize = headerLen

// MinFailSafeSectorSize is the smallest sector size of the fail-safe format:
// a superblock is 40 bytes of fields and two SHA-256 digests (spec App. A).
const MinFailSafeSectorSize = superblockMin

// Errors callers can branch on with errors.Is. Errors about the header carry
// more detail as a *HeaderError.
var (
	// ErrUnset means the image holds no file (it is blank, formatted or deleted).
	ErrUnset = errors.New("no data")
	// ErrBadChecksum means the file's data does not match the checksum in the
	// header: the data is damaged, or the image was read with the wrong sector size.
	ErrBadChecksum = errors.New("bad checksum")
	// ErrTooLarge means the data does not fit on the device. It is returned
	// before anything is written.
	ErrTooLarge = errors.New("data does not fit on the device")
	// ErrNotAligned means the device size is not a multiple of the sector size.
	ErrNotAligned = errors.New("device size is not a multiple of the sector size")
	// ErrSectorSize means the sector size is too small for the format.
	ErrSectorSize = errors.New("sector size too small")
	// ErrOutOfRange means a header or a sector chain points past the end of
	// the device (a corrupt image, or one read with the wrong sector size).
	ErrOutOfRange = errors.New("data extends past the end of the device")
	// ErrCorrupt means a fail-safe sector chain is malformed.
	ErrCorrupt = errors.New("corrupt sector chain")
	// ErrReadOnly means the image was opened read-only and cannot be changed.
	ErrReadOnly = errors.New("image is read-only")
	// ErrBusy means a block device is mounted or in exclusive use elsewhere.
	ErrBusy = errors.New("device is mounted or in use")

	// The reasons a *HeaderError can have (spec §2.1 and App. A).
	ErrNotOneFFS         = errors.New("not a OneFFS")
	ErrBadCRC            = errors.New("bad CRC")
	ErrLengthTooLong     = errors.New("length too long")
	ErrSuperblockVersion = errors.New("unsupported superblock version")
)

// HeaderError reports a header (classic) or superblock (fail-safe) that
// cannot be decoded. Err is one of ErrNotOneFFS, ErrBadCRC, ErrLengthTooLong
// or ErrSuperblockVersion.
type HeaderError struct {
	Err    error
	Detail string // optional, e.g. the unsupported version number
}

func (e *HeaderError) Error() string {
	if e.Detail != "" {
		return "bad header: " + e.Err.Error() + ": " + e.Detail
	}
	return "bad header: " + e.Err.Error()
}

func (e *HeaderError) Unwrap() error { return e.Err }

// Format is an on-disk format.
type Format int

const (
	// Classic is the original OneFFS format (spec §1–9).
	Classic Format = iota
	// FailSafe is the OneFFS-Fail-safe format (spec App. A).
	FailSafe
)

func (f Format) String() string {
	switch f {
	case Classic:
		return "classic"
	case FailSafe:
		return "fail-safe"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// ParseFormat parses "classic" or "fail-safe".
func ParseFormat(s string) (Format, error) {
	switch s {
	case "classic":
		return Classic, nil
	case "fail-safe", "failsafe":
		return FailSafe, nil
	}
	return 0, fmt.Errorf("unknown format %q (want classic or fail-safe)", s)
}

// Device is what an image lives on: a file, a block device, or anything that
// can read and write at byte offsets and make its writes durable.
type Device interface {
	io.ReaderAt
	io.WriterAt
	// Sync makes every completed write durable (fsync for files).
	Sync() error
}

type config struct {
	sectorSize int
	sectorSet  bool
	format     Format
	formatSet  bool
	readOnly   bool
	size       int64
	now        func() time.Time
}

// Option configures Open, New and Create.
type Option func(*config)

// WithSectorSize sets the sector size. The default is the kernel's logical
// sector size for block devices (BLKSSZGET) and DefaultSectorSize otherwise.
// The sector size is not stored in the image: read with the size it was
// written with.
func WithSectorSize(n int) Option {
	return func(c *config) { c.sectorSize, c.sectorSet = n, true }
}

// WithFormat sets the format that Write, Format and Create use. Without it,
// they keep the format the device already has (classic on a blank device).
// Writing with another format converts the device.
func WithFormat(f Format) Option { return func(c *config) { c.format, c.formatSet = f, true } }

// WithReadOnly opens the image read-only: Write, Format and Delete return ErrReadOnly.
func WithReadOnly() Option { return func(c *config) { c.readOnly = true } }

// WithSize sets the size of the image file Create makes. The default is the
// smallest image that holds the data.
func WithSize(n int64) Option { return func(c *config) { c.size = n } }

// WithClock sets the clock for the fail-safe superblock timestamp (informational only).
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// Image is a OneFFS file system on a device.
type Image struct {
	mu     sync.Mutex
	dev    Device
	closer io.Closer
	ss     int64 // sector size
	n      int64 // number of sectors
	cfg    config
}

// Info describes what an image holds, from its metadata alone (Stat does not
// read or check the data; Read does).
type Info struct {
	Format Format
	Set    bool  // a file is stored
	Length int64 // its length in bytes, when Set

	FileCRC uint32   // classic: CRC-32 of the data
	Counter int64    // fail-safe: write counter of the superblock in use
	SHA256  [32]byte // fail-safe: SHA-256 of the data
	// Degraded means one fail-safe superblock is damaged: the file is read
	// through the other one, and the next Write repairs both.
	Degraded bool
	// Notes describe what was worked around: a damaged superblock, or an
	// interrupted write (the two superblocks differ).
	Notes []string
}

// New returns an Image on dev, which is size bytes long. It does not read or
// write the device.
func New(dev Device, size int64, opts ...Option) (*Image, error) {
	cfg := config{}
	for _, o := range opts {
		o(&cfg)
	}
	return newImage(dev, size, cfg)
}

func newImage(dev Device, size int64, cfg config) (*Image, error) {
	if !cfg.sectorSet {
		cfg.sectorSize = DefaultSectorSize
	}
	if cfg.now == nil {
		cfg.now = time.Now
	}
	if err := cfg.checkSectorSize(); err != nil {
		return nil, err
	}
	ss := int64(cfg.sectorSize)
	if size%ss != 0 {
		return nil, fmt.Errorf("%w: %d bytes is not a multiple of %d", ErrNotAligned, size, ss)
	}
	if size < ss {
		return nil, fmt.Errorf("device too small: %d bytes, need at least one sector of %d", size, ss)
	}
	return &Image{dev: dev, ss: ss, n: size / ss, cfg: cfg}, nil
}

func (cfg *config) checkSectorSize() error {
	ss := cfg.sectorSize
	if ss < MinSectorSize {
		return fmt.Errorf("%w: %d bytes, need at least %d", ErrSectorSize, ss, MinSectorSize)
	}
	if cfg.formatSet && cfg.format == FailSafe && ss < MinFailSafeSectorSize {
		return fmt.Errorf("%w for the fail-safe format: %d bytes, need at least %d", ErrSectorSize, ss, MinFailSafeSectorSize)
	}
	return nil
}

// SectorSize returns the sector size in bytes.
func (im *Image) SectorSize() int { return int(im.ss) }

// DeviceSize returns the size of the device in bytes.
func (im *Image) DeviceSize() int64 { return im.ss * im.n }

// Close closes the device if Open opened it.
func (im *Image) Close() error {
	if im.closer == nil {
		return nil
	}
	return im.closer.Close()
}

// Stat reads the metadata.
func (im *Image) Stat() (Info, error) {
	im.mu.Lock()
	defer im.mu.Unlock()
	l, err := im.detect()
	if err != nil {
		return Info{}, err
	}
	return l.info(), nil
}

// Size returns the length of the stored file, or ErrUnset.
func (im *Image) Size() (int64, error) {
	info, err := im.Stat()
	if err != nil {
		return 0, err
	}
	if !info.Set {
		return 0, ErrUnset
	}
	return info.Length, nil
}

// Read returns the stored file after checking its checksum. It returns
// ErrUnset when there is none.
func (im *Image) Read() ([]byte, error) {
	im.mu.Lock()
	defer im.mu.Unlock()
	l, err := im.detect()
	if err != nil {
		return nil, err
	}
	if l.fs != nil {
		return im.readFailSafe(l.fs)
	}
	return im.readClassic(l.hdr)
}

// Write replaces the stored file with data, durably (see the package doc for
// what a power cut leaves). Data that does not fit is refused with
// ErrTooLarge before the device is touched.
func (im *Image) Write(data []byte) error {
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.cfg.readOnly {
		return ErrReadOnly
	}
	l, err := im.detect()
	// A device whose metadata cannot be decoded can still be written over.
	var he *HeaderError
	if err != nil && !errors.As(err, &he) {
		return err
	}
	if im.target(l) == FailSafe {
		return im.writeFailSafe(l, data)
	}
	return im.writeClassic(data)
}

// Format makes the image empty by rewriting its metadata only (the data
// sectors are left as they are; use Delete to clear them).
func (im *Image) Format() error {
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.cfg.readOnly {
		return ErrReadOnly
	}
	l, _ := im.detect() // a corrupt device can be formatted
	if im.target(l) == FailSafe {
		return im.formatFailSafe(l)
	}
	return im.formatClassic(l)
}

// Delete removes the stored file: it becomes unreachable first, then its data
// sectors are zeroed.
func (im *Image) Delete() error {
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.cfg.readOnly {
		return ErrReadOnly
	}
	l, err := im.detect()
	var he *HeaderError
	if err != nil && !errors.As(err, &he) {
		return err
	}
	if l.fs != nil {
		return im.deleteFailSafe(l.fs)
	}
	return im.deleteClassic(l)
}

// layout is what detect found on the device: exactly one of hdr (classic)
// and fs (fail-safe) is meaningful.
type layout struct {
	hdr header
	fs  *fsState
}

// failSafe returns the fail-safe state, or nil for a classic or unknown layout.
func (l *layout) failSafe() *fsState {
	if l == nil {
		return nil
	}
	return l.fs
}

func (l *layout) info() Info {
	if l.fs != nil {
		return l.fs.info()
	}
	return Info{Format: Classic, Set: l.hdr.set, Length: int64(l.hdr.length), FileCRC: l.hdr.crc}
}

// target is the format a change should produce.
func (im *Image) target(l *layout) Format {
	if im.cfg.formatSet {
		return im.cfg.format
	}
	if l.failSafe() != nil {
		return FailSafe
	}
	return Classic
}

// detect decides which format the device holds and decodes its metadata.
//
// Sector 0 with the classic magic is classic. Sector 0 that is all zeros in
// the header bytes is a blank classic device, unless the last sector holds a
// valid fail-safe superblock (a fail-safe device whose first superblock was
// zeroed). Anything else is fail-safe if either superblock's hash is good,
// and otherwise a classic header error.
//
// On error, the returned layout is still usable by Write, Format and Delete.
func (im *Image) detect() (*layout, error) {
	s0 := make([]byte, im.ss)
	if err := im.readSectors(s0, 0); err != nil {
		return nil, err
	}
	h, herr := decodeHeader(s0)
	if magicOf(s0) == magic {
		return &layout{hdr: h}, herr
	}
	blank := herr == nil // magic 0 and an all-zero header: unset
	if im.ss < MinFailSafeSectorSize || im.n < 2 {
		return &layout{hdr: h}, herr
	}
	fs, err := im.readSuperblocks(s0)
	if err != nil {
		return nil, err
	}
	if fs == nil || (blank && fs.sb[1] == nil) {
		return &layout{hdr: h}, herr
	}
	return &layout{fs: fs}, fs.err
}

func (im *Image) readSectors(p []byte, sector int64) error {
	if _, err := im.dev.ReadAt(p, sector*im.ss); err != nil {
		return fmt.Errorf("read sector %d: %w", sector, err)
	}
	return nil
}

func (im *Image) writeSectors(p []byte, sector int64) error {
	if _, err := im.dev.WriteAt(p, sector*im.ss); err != nil {
		return fmt.Errorf("write sector %d: %w", sector, err)
	}
	return nil
}

func (im *Image) sync() error {
	if err := im.dev.Sync(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return nil
}

// zeroSectors writes zeros over count sectors from first, in bounded chunks.
func (im *Image) zeroSectors(first, count int64) error {
	const chunk = 1 << 20
	per := max(chunk/im.ss, 1)
	buf := make([]byte, min(count, per)*im.ss)
	for count > 0 {
		k := min(count, per)
		if err := im.writeSectors(buf[:k*im.ss], first); err != nil {
			return err
		}
		first += k
		count -= k
	}
	return nil
}

// ceilDiv returns ceil(a/b) for a >= 0, b > 0.
func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }
