package oneffs

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Classic header layout (spec §2): magic u16, length u64, file CRC u32 and
// header CRC u32, big-endian, in the first 18 bytes of sector 0; the rest of
// the sector is written as zeros and never checked.
const (
	headerLen = 18
	magic     = 0x1F1F
	// maxLength is OCaml's max_int: longer lengths are "Length too long" (spec §2.1 step 5).
	maxLength = 1<<62 - 1
)

type header struct {
	set    bool
	length uint64
	crc    uint32
}

func magicOf(s []byte) uint16 { return binary.BigEndian.Uint16(s[0:2]) }

// decodeHeader decodes a classic header in the order of the original's
// Header.unmarshal (spec §2.1), which decides the error reported.
func decodeHeader(s []byte) (header, error) {
	m := binary.BigEndian.Uint16(s[0:2])
	length := binary.BigEndian.Uint64(s[2:10])
	fileCRC := binary.BigEndian.Uint32(s[10:14])
	hdrCRC := binary.BigEndian.Uint32(s[14:18])
	if (m == 0 || m == magic) && length == 0 && fileCRC == 0 && hdrCRC == 0 {
		return header{}, nil // unset
	}
	if m != magic {
		return header{}, &HeaderError{Err: ErrNotOneFFS}
	}
	if hdrCRC != crc32.ChecksumIEEE(s[0:14]) {
		return header{}, &HeaderError{Err: ErrBadCRC}
	}
	if length > maxLength {
		return header{}, &HeaderError{Err: ErrLengthTooLong}
	}
	return header{set: true, length: length, crc: fileCRC}, nil
}

// encodeHeader writes the header for a file into s, which must be zeroed
// (spec §2.2). With set false it writes the "empty header": the magic and 16
// zero bytes, whose header CRC is deliberately 0.
func encodeHeader(s []byte, h header) {
	binary.BigEndian.PutUint16(s[0:2], magic)
	if !h.set {
		return
	}
	binary.BigEndian.PutUint64(s[2:10], h.length)
	binary.BigEndian.PutUint32(s[10:14], h.crc)
	binary.BigEndian.PutUint32(s[14:18], crc32.ChecksumIEEE(s[0:14]))
}

// classicCapacity is the largest file that fits: every sector but the header's.
func (im *Image) classicCapacity() int64 { return (im.n - 1) * im.ss }

func (im *Image) readClassic(h header) ([]byte, error) {
	if !h.set {
		return nil, ErrUnset
	}
	// Check the range before allocating (the original allocates first and
	// runs out of memory on a corrupt length, spec §5 read).
	if int64(h.length) > im.classicCapacity() {
		return nil, fmt.Errorf("%w: the header says %d bytes, the device holds at most %d", ErrOutOfRange, h.length, im.classicCapacity())
	}
	data := make([]byte, h.length)
	if len(data) > 0 {
		if err := im.readSectors(data, 1); err != nil {
			return nil, err
		}
	}
	if crc32.ChecksumIEEE(data) != h.crc {
		return nil, ErrBadChecksum
	}
	return data, nil
}

// writeClassic follows the original's three steps (spec §5 write) with a
// size check first and a Sync after each step.
func (im *Image) writeClassic(data []byte) error {
	if int64(len(data)) > im.classicCapacity() {
		return fmt.Errorf("%w: %d bytes, room for %d", ErrTooLarge, len(data), im.classicCapacity())
	}
	// Step 1: invalidate the old file.
	if err := im.writeHeader(header{}); err != nil {
		return err
	}
	// Step 2: the data, with the last sector zero-padded.
	if err := im.writeData(data, 1); err != nil {
		return err
	}
	if err := im.sync(); err != nil {
		return err
	}
	// Step 3: the header that makes the new file visible.
	return im.writeHeader(header{set: true, length: uint64(len(data)), crc: crc32.ChecksumIEEE(data)})
}

// writeHeader writes a whole header sector and syncs it.
func (im *Image) writeHeader(h header) error {
	s := make([]byte, im.ss)
	encodeHeader(s, h)
	if err := im.writeSectors(s, 0); err != nil {
		return err
	}
	return im.sync()
}

// writeData writes data from sector first on, zero-padding the last sector.
func (im *Image) writeData(data []byte, first int64) error {
	full := int64(len(data)) / im.ss * im.ss
	if full > 0 {
		if err := im.writeSectors(data[:full], first); err != nil {
			return err
		}
	}
	if rest := data[full:]; len(rest) > 0 {
		last := make([]byte, im.ss)
		copy(last, rest)
		if err := im.writeSectors(last, first+full/im.ss); err != nil {
			return err
		}
	}
	return nil
}

// formatClassic writes the empty header. When the device was fail-safe, its
// last superblock is cleared too, so that nothing can mistake the device for
// fail-safe later.
func (im *Image) formatClassic(l *layout) error {
	if err := im.writeHeader(header{}); err != nil {
		return err
	}
	if l.failSafe() != nil && im.n > 1 {
		if err := im.zeroSectors(im.n-1, 1); err != nil {
			return err
		}
		return im.sync()
	}
	return nil
}

// deleteClassic invalidates the header, then zeroes the old data sectors.
func (im *Image) deleteClassic(l *layout) error {
	if err := im.formatClassic(l); err != nil {
		return err
	}
	if !l.hdr.set {
		return nil
	}
	n := min(ceilDiv(int64(l.hdr.length), im.ss), im.n-1)
	if n == 0 {
		return nil
	}
	if err := im.zeroSectors(1, n); err != nil {
		return err
	}
	return im.sync()
}
