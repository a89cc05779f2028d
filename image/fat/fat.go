// Package fat edits a FAT12, FAT16 or FAT32 file system in place: SetTimes
// gives every file and directory the same time stamps, so that two builds
// of a boot partition that differ only in when they were made come out
// byte for byte the same (monogok stamps cmdline.txt and its peers with
// the time of the build, and the kernel files with their time in the
// module cache).
package fat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// Device is what SetTimes edits: a file system image or partition.
type Device interface {
	io.ReaderAt
	io.WriterAt
}

// fs is the geometry of a FAT file system, from its boot sector.
type fs struct {
	d               Device
	sectorSize      int64
	clusterSize     int64
	fatStart        int64 // byte offset of the first FAT
	rootStart       int64 // FAT12/16: byte offset of the fixed root directory
	rootSize        int64 // FAT12/16: its size in bytes
	rootCluster     uint32
	dataStart       int64 // byte offset of cluster 2
	clusters        uint32
	bits            int // 12, 16 or 32
	visitedClusters map[uint32]bool
	changed         int
}

// SetTimes sets the creation, access and modification time of every entry
// in the file system on d (the volume label included) to t, and returns how
// many entries it changed. t is rounded down to FAT's 2-second steps; a
// time before 1980, FAT's epoch, is refused.
func SetTimes(d Device, t time.Time) (int, error) {
	date, clock, ok := dosTime(t)
	if !ok {
		return 0, fmt.Errorf("time %v: FAT cannot store a time before 1980 or after 2107", t)
	}
	f, err := open(d)
	if err != nil {
		return 0, err
	}
	stamp := func(e []byte) bool {
		before := string(e[13:26])
		e[13] = 0 // creation time, hundredths
		binary.LittleEndian.PutUint16(e[14:], clock)
		binary.LittleEndian.PutUint16(e[16:], date)
		binary.LittleEndian.PutUint16(e[18:], date) // access date
		binary.LittleEndian.PutUint16(e[22:], clock)
		binary.LittleEndian.PutUint16(e[24:], date)
		return before != string(e[13:26])
	}
	if f.bits == 32 {
		err = f.walkChain(f.rootCluster, stamp, 0)
	} else {
		err = f.walkRegion(f.rootStart, f.rootSize, stamp, 0)
	}
	if err == errEnd {
		err = nil
	}
	return f.changed, err
}

// dosTime encodes t (UTC) as a FAT date and time.
func dosTime(t time.Time) (date, clock uint16, ok bool) {
	t = t.UTC()
	if t.Year() < 1980 || t.Year() > 2107 {
		return 0, 0, false
	}
	date = uint16(t.Year()-1980)<<9 | uint16(t.Month())<<5 | uint16(t.Day())
	clock = uint16(t.Hour())<<11 | uint16(t.Minute())<<5 | uint16(t.Second()/2)
	return date, clock, true
}

func open(d Device) (*fs, error) {
	bs := make([]byte, 512)
	if _, err := d.ReadAt(bs, 0); err != nil {
		return nil, fmt.Errorf("reading the boot sector: %w", err)
	}
	if bs[510] != 0x55 || bs[511] != 0xaa {
		return nil, errors.New("no FAT boot sector (signature 55 aa missing)")
	}
	le16 := func(off int) int64 { return int64(binary.LittleEndian.Uint16(bs[off:])) }
	le32 := func(off int) int64 { return int64(binary.LittleEndian.Uint32(bs[off:])) }
	f := &fs{d: d, sectorSize: le16(11), visitedClusters: map[uint32]bool{}}
	spc := int64(bs[13])
	reserved, nfats, rootEntries := le16(14), int64(bs[16]), le16(17)
	total, fatSize := le16(19), le16(22)
	if total == 0 {
		total = le32(32)
	}
	if fatSize == 0 {
		fatSize = le32(36)
	}
	switch f.sectorSize {
	case 512, 1024, 2048, 4096:
	default:
		return nil, fmt.Errorf("sector size %d: not a FAT file system", f.sectorSize)
	}
	if spc == 0 || spc&(spc-1) != 0 || reserved == 0 || nfats == 0 || fatSize == 0 || total == 0 {
		return nil, errors.New("implausible FAT boot sector")
	}
	f.clusterSize = spc * f.sectorSize
	rootSectors := (rootEntries*32 + f.sectorSize - 1) / f.sectorSize
	f.fatStart = reserved * f.sectorSize
	f.rootStart = (reserved + nfats*fatSize) * f.sectorSize
	f.rootSize = rootEntries * 32
	f.dataStart = f.rootStart + rootSectors*f.sectorSize
	dataSectors := total - reserved - nfats*fatSize - rootSectors
	if dataSectors <= 0 {
		return nil, errors.New("implausible FAT boot sector: no data region")
	}
	f.clusters = uint32(dataSectors / spc)
	switch {
	case f.clusters < 4085:
		f.bits = 12
	case f.clusters < 65525:
		f.bits = 16
	default:
		f.bits = 32
		f.rootCluster = uint32(le32(44))
	}
	if f.bits != 32 && rootEntries == 0 {
		return nil, errors.New("FAT12/16 without a root directory")
	}
	return f, nil
}

// maxDepth bounds directory nesting (a corrupt file system may loop).
const maxDepth = 32

// walkRegion visits the directory entries of size bytes at off.
func (f *fs) walkRegion(off, size int64, visit func([]byte) bool, depth int) error {
	buf := make([]byte, size)
	if _, err := f.d.ReadAt(buf, off); err != nil {
		return fmt.Errorf("reading a directory at byte %d: %w", off, err)
	}
	end, subdirs := f.entriesOf(buf, visit)
	if _, err := f.d.WriteAt(buf, off); err != nil {
		return err
	}
	for _, c := range subdirs {
		if depth >= maxDepth {
			return errors.New("directories nested too deep (a loop?)")
		}
		if err := f.walkChain(c, visit, depth+1); err != nil {
			return err
		}
	}
	if end {
		return errEnd
	}
	return nil
}

// errEnd is the end-of-directory marker seen: the rest of the directory
// is unused.
var errEnd = errors.New("end of directory")

// walkChain visits the directory whose clusters start at first.
func (f *fs) walkChain(first uint32, visit func([]byte) bool, depth int) error {
	for c := first; c >= 2 && c < f.clusters+2; {
		if f.visitedClusters[c] {
			return fmt.Errorf("cluster %d is in two places (a loop in the FAT?)", c)
		}
		f.visitedClusters[c] = true
		err := f.walkRegion(f.dataStart+int64(c-2)*f.clusterSize, f.clusterSize, visit, depth)
		if err == errEnd {
			return nil
		}
		if err != nil {
			return err
		}
		if c, err = f.next(c); err != nil {
			return err
		}
	}
	return nil
}

// entriesOf stamps the short entries of one directory block and returns
// whether it holds the end marker, and the first clusters of the
// subdirectories it names (not . and ..).
func (f *fs) entriesOf(buf []byte, visit func([]byte) bool) (end bool, subdirs []uint32) {
	for i := 0; i+32 <= len(buf); i += 32 {
		e := buf[i : i+32]
		switch {
		case e[0] == 0:
			return true, subdirs
		case e[0] == 0xe5 || e[11]&0x3f == 0x0f: // deleted, long name
			continue
		}
		if visit(e) {
			f.changed++
		}
		if e[11]&0x10 != 0 && e[0] != '.' {
			c := uint32(binary.LittleEndian.Uint16(e[26:]))
			if f.bits == 32 {
				c |= uint32(binary.LittleEndian.Uint16(e[20:])) << 16
			}
			subdirs = append(subdirs, c)
		}
	}
	return false, subdirs
}

// next is the cluster after c in its chain; past the end, 0.
func (f *fs) next(c uint32) (uint32, error) {
	var off int64
	switch f.bits {
	case 12:
		off = int64(c) + int64(c)/2
	case 16:
		off = int64(c) * 2
	default:
		off = int64(c) * 4
	}
	b := make([]byte, 4)
	if _, err := f.d.ReadAt(b, f.fatStart+off); err != nil {
		return 0, fmt.Errorf("reading the FAT: %w", err)
	}
	var n uint32
	switch f.bits {
	case 12:
		n = uint32(binary.LittleEndian.Uint16(b))
		if c%2 == 1 {
			n >>= 4
		}
		n &= 0xfff
		if n >= 0xff8 {
			return 0, nil
		}
	case 16:
		n = uint32(binary.LittleEndian.Uint16(b))
		if n >= 0xfff8 {
			return 0, nil
		}
	default:
		n = binary.LittleEndian.Uint32(b) & 0x0fffffff
		if n >= 0x0ffffff8 {
			return 0, nil
		}
	}
	return n, nil
}
