// Package gpt edits the GUID partition table of a disk image (UEFI
// specification 2.10, §5.3) just enough for the appliance image: find a
// partition, and add one at the end of the disk by shrinking the last
// partition. Both copies of the table and their CRC-32s are rewritten;
// LBA 0 (gokrazy's hybrid MBR) is never touched.
package gpt

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strings"
	"unicode/utf16"
)

// SectorSize is the logical block size of the images we build.
const SectorSize = 512

// LinuxData is the partition type GUID "Linux filesystem data"
// (0FC63DAF-8483-4772-8E79-3D69D8477DE4), in the on-disk mixed-endian form.
var LinuxData = GUID{0xAF, 0x3D, 0xC6, 0x0F, 0x83, 0x84, 0x72, 0x47, 0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4}

// GUID is a GUID as stored on disk.
type GUID [16]byte

// String formats g as text (the first three fields little-endian).
func (g GUID) String() string {
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X", binary.LittleEndian.Uint32(g[0:4]), binary.LittleEndian.Uint16(g[4:6]),
		binary.LittleEndian.Uint16(g[6:8]), g[8:10], g[10:16])
}

// Partition is one entry of the table.
type Partition struct {
	Index       int // from 1
	Type, ID    GUID
	First, Last uint64 // LBAs, inclusive
	Attributes  uint64
	Name        string
}

// Offset and Size locate the partition in bytes.
func (p Partition) Offset() int64 { return int64(p.First) * SectorSize }
func (p Partition) Size() int64   { return int64(p.Last-p.First+1) * SectorSize }

// Table is a disk's partition table.
type Table struct {
	header     []byte // primary header sector
	entries    []byte // raw entry array
	backupLBA  uint64
	entriesLBA uint64
	entrySize  uint32
	Partitions []Partition // the used entries
}

// Errors.
var (
	ErrNoGPT    = errors.New("no GPT")
	ErrNotFound = errors.New("no such partition")
	ErrNoRoom   = errors.New("no room for the partition")
)

// Read reads and checks the primary table.
func Read(f io.ReaderAt) (*Table, error) {
	h := make([]byte, SectorSize)
	if _, err := f.ReadAt(h, SectorSize); err != nil {
		return nil, err
	}
	if string(h[0:8]) != "EFI PART" {
		return nil, ErrNoGPT
	}
	hsize := binary.LittleEndian.Uint32(h[12:16])
	if hsize < 92 || hsize > SectorSize {
		return nil, fmt.Errorf("%w: header size %d", ErrNoGPT, hsize)
	}
	if crcOf(h[:hsize], 16) != binary.LittleEndian.Uint32(h[16:20]) {
		return nil, fmt.Errorf("%w: primary header CRC mismatch", ErrNoGPT)
	}
	t := &Table{header: h, backupLBA: binary.LittleEndian.Uint64(h[32:40]),
		entriesLBA: binary.LittleEndian.Uint64(h[72:80]), entrySize: binary.LittleEndian.Uint32(h[84:88])}
	n := binary.LittleEndian.Uint32(h[80:84])
	if t.entrySize < 128 || t.entrySize > 4096 || n == 0 || n > 1024 {
		return nil, fmt.Errorf("%w: %d entries of %d bytes", ErrNoGPT, n, t.entrySize)
	}
	t.entries = make([]byte, int(n)*int(t.entrySize))
	if _, err := f.ReadAt(t.entries, int64(t.entriesLBA)*SectorSize); err != nil {
		return nil, err
	}
	if crc32.ChecksumIEEE(t.entries) != binary.LittleEndian.Uint32(h[88:92]) {
		return nil, fmt.Errorf("%w: partition entries CRC mismatch", ErrNoGPT)
	}
	for i := 0; i < int(n); i++ {
		e := t.entries[i*int(t.entrySize):]
		var p Partition
		copy(p.Type[:], e[0:16])
		if p.Type == (GUID{}) {
			continue
		}
		p.Index = i + 1
		copy(p.ID[:], e[16:32])
		p.First = binary.LittleEndian.Uint64(e[32:40])
		p.Last = binary.LittleEndian.Uint64(e[40:48])
		p.Attributes = binary.LittleEndian.Uint64(e[48:56])
		u := make([]uint16, 36)
		for j := range u {
			u[j] = binary.LittleEndian.Uint16(e[56+2*j:])
		}
		p.Name = strings.TrimRight(string(utf16.Decode(u)), "\x00")
		t.Partitions = append(t.Partitions, p)
	}
	return t, nil
}

// DiskGUID is the disk's GUID.
func (t *Table) DiskGUID() GUID { return GUID(t.header[56:72]) }

// Derive is a GUID made from the disk's GUID and what, in the form of a
// random one (version 4): the same disk and what give the same GUID, so
// that an image is built the same twice.
func (t *Table) Derive(what string) GUID {
	disk := t.DiskGUID()
	sum := sha256.Sum256(append(disk[:], what...))
	g := GUID(sum[:16])
	g[7] = g[7]&0x0f | 0x40 // version 4 (byte 7: the high byte of the little-endian third field)
	g[8] = g[8]&0x3f | 0x80
	return g
}

// newID is the unique GUID of new partition index named name. gokrazy
// numbers its partitions' GUIDs (60c24cc1-f3f9-427a-8199-XXXXXXXX000N, the
// X from the host name): when partition 1 follows that scheme, the new one
// does too; otherwise it is derived from the disk's GUID and name.
func (t *Table) newID(index int, name string) GUID {
	if p, err := t.Number(1); err == nil && p.ID[14] == 0 && p.ID[15] == 1 && index < 256 {
		id := p.ID
		id[15] = byte(index)
		return id
	}
	return t.Derive("partition " + name)
}

// DiskSize is the size of the disk the table was made for: its backup
// header is the last sector (UEFI 2.10 §5.3.2).
func (t *Table) DiskSize() int64 { return int64(t.backupLBA+1) * SectorSize }

// Number returns partition number i (counted from 1).
func (t *Table) Number(i int) (Partition, error) {
	for _, p := range t.Partitions {
		if p.Index == i {
			return p, nil
		}
	}
	return Partition{}, fmt.Errorf("%w: number %d", ErrNotFound, i)
}

// Find returns the partition named name.
func (t *Table) Find(name string) (Partition, error) {
	for _, p := range t.Partitions {
		if p.Name == name {
			return p, nil
		}
	}
	return Partition{}, fmt.Errorf("%w: %q", ErrNotFound, name)
}

// AddAtEnd makes room for a size-byte partition named name at the end of
// the disk by shrinking the partition that ends last (aligned to 1 MiB),
// adds it with type LinuxData and a unique GUID made by newID, and writes
// both tables. It returns the new partition.
func AddAtEnd(f interface {
	io.ReaderAt
	io.WriterAt
}, name string, size int64) (Partition, error) {
	t, err := Read(f)
	if err != nil {
		return Partition{}, err
	}
	if _, err := t.Find(name); err == nil {
		return Partition{}, fmt.Errorf("a partition named %q exists already", name)
	}
	if len(t.Partitions) == 0 {
		return Partition{}, fmt.Errorf("%w: no partition to shrink", ErrNoRoom)
	}
	last := t.Partitions[0]
	for _, p := range t.Partitions {
		if p.Last > last.Last {
			last = p
		}
	}
	const align = 1 << 20 / SectorSize
	sectors := uint64((size + SectorSize - 1) / SectorSize)
	if last.Last+1 < sectors+align {
		return Partition{}, ErrNoRoom
	}
	newEnd := (last.Last+1-sectors)/align*align - 1
	if newEnd <= last.First {
		return Partition{}, fmt.Errorf("%w: partition %d (%s) would vanish", ErrNoRoom, last.Index, last.Name)
	}
	slot := -1
	n := len(t.entries) / int(t.entrySize)
	for i := 0; i < n; i++ {
		if bytes.Equal(t.entries[i*int(t.entrySize):i*int(t.entrySize)+16], make([]byte, 16)) {
			slot = i
			break
		}
	}
	if slot < 0 {
		return Partition{}, fmt.Errorf("%w: the table is full", ErrNoRoom)
	}
	np := Partition{Index: slot + 1, Type: LinuxData, First: newEnd + 1, Last: last.Last, Name: name}
	np.ID = t.newID(np.Index, name)
	u := utf16.Encode([]rune(name))
	if len(u) > 36 {
		return Partition{}, fmt.Errorf("partition name %q is longer than 36 UTF-16 units", name)
	}
	// Shrink the last partition, fill the new entry.
	binary.LittleEndian.PutUint64(t.entries[(last.Index-1)*int(t.entrySize)+40:], newEnd)
	e := t.entries[slot*int(t.entrySize) : (slot+1)*int(t.entrySize)]
	copy(e[0:16], np.Type[:])
	copy(e[16:32], np.ID[:])
	binary.LittleEndian.PutUint64(e[32:40], np.First)
	binary.LittleEndian.PutUint64(e[40:48], np.Last)
	for j, c := range u {
		binary.LittleEndian.PutUint16(e[56+2*j:], c)
	}
	if err := t.write(f); err != nil {
		return Partition{}, err
	}
	return np, nil
}

// write stores the entries and both headers: the backup's entries and
// header first, then the primary's, so that a cut leaves one copy valid.
func (t *Table) write(f interface {
	io.ReaderAt
	io.WriterAt
}) error {
	sum := crc32.ChecksumIEEE(t.entries)
	backup := make([]byte, SectorSize)
	if _, err := f.ReadAt(backup, int64(t.backupLBA)*SectorSize); err != nil {
		return fmt.Errorf("backup header: %w", err)
	}
	if string(backup[0:8]) != "EFI PART" {
		return fmt.Errorf("%w: no backup header at LBA %d", ErrNoGPT, t.backupLBA)
	}
	backupEntries := binary.LittleEndian.Uint64(backup[72:80])
	for _, hdr := range []struct {
		h       []byte
		entries uint64
		lba     uint64
	}{{backup, backupEntries, t.backupLBA}, {t.header, t.entriesLBA, 1}} {
		if _, err := f.WriteAt(t.entries, int64(hdr.entries)*SectorSize); err != nil {
			return err
		}
		binary.LittleEndian.PutUint32(hdr.h[88:92], sum)
		hsize := binary.LittleEndian.Uint32(hdr.h[12:16])
		binary.LittleEndian.PutUint32(hdr.h[16:20], crcOf(hdr.h[:hsize], 16))
		if _, err := f.WriteAt(hdr.h, int64(hdr.lba)*SectorSize); err != nil {
			return err
		}
	}
	return nil
}

// crcOf is the CRC-32 of b with the 4 bytes at off taken as zero.
func crcOf(b []byte, off int) uint32 {
	c := bytes.Clone(b)
	copy(c[off:off+4], []byte{0, 0, 0, 0})
	return crc32.ChecksumIEEE(c)
}

// Section is a partition's bytes on an image file: a ReaderAt and
// WriterAt bounded to the partition, with Sync (what oneffs.New needs).
type Section struct {
	f         *os.File
	off, size int64
}

// Section returns partition p of the image or disk f.
func (p Partition) Section(f *os.File) *Section {
	return &Section{f: f, off: p.Offset(), size: p.Size()}
}

// ErrOutside is a read or write past the partition.
var ErrOutside = errors.New("outside the partition")

func (s *Section) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(b)) > s.size {
		return 0, ErrOutside
	}
	return s.f.ReadAt(b, s.off+off)
}

func (s *Section) WriteAt(b []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(b)) > s.size {
		return 0, ErrOutside
	}
	return s.f.WriteAt(b, s.off+off)
}

// Sync makes the writes durable.
func (s *Section) Sync() error { return s.f.Sync() }
