package oneffs

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"time"
)

// Fail-safe superblock layout (spec App. A, lib/fail_safe/filesystem.ml),
// big-endian, one whole sector, stored in the first and the last sector:
//
//	0   u16  version (1)
//	2   6    padding (the original leaves it uninitialised; we write zeros)
//	8   i64  counter, +1 per write
//	16  u64  timestamp: days*86_000e9 + ns within the day (sic: 86 000)
//	24  i64  first sector of the data chain, 0 = none
//	32  i64  data length
//	40  32   SHA-256 of the data
//	72  ..   padding (zeros)
//	ss-32    SHA-256 of bytes [0, ss-32)
//
// Each data sector holds an 8-byte big-endian "next" sector number (0 ends
// the chain) and up to ss-8 bytes of data.
const (
	superblockMin = 40 + 2*sha256.Size
	fsVersion     = 1
	nsPerDay      = 86_000 * int64(time.Second)
	chainHeader   = 8
	maxBatch      = 2048 // sectors read or written in one call
)

type superblock struct {
	version   uint16
	counter   int64
	timestamp uint64
	active    int64
	length    int64
	sum       [sha256.Size]byte
}

// unset reports the state written by formatting or deleting: the original's
// init superblock (counter 0, no chain). Any write makes the counter >= 1.
func (sb *superblock) unset() bool { return sb.counter == 0 && sb.active == 0 && sb.length == 0 }

// errSuperblockHash marks a sector that is not a superblock (or a torn one).
var errSuperblockHash = fmt.Errorf("superblock hash mismatch")

func decodeSuperblock(s []byte) (*superblock, error) {
	end := len(s) - sha256.Size
	if sum := sha256.Sum256(s[:end]); !bytes.Equal(sum[:], s[end:]) {
		return nil, errSuperblockHash
	}
	sb := &superblock{
		version:   binary.BigEndian.Uint16(s[0:2]),
		counter:   int64(binary.BigEndian.Uint64(s[8:16])),
		timestamp: binary.BigEndian.Uint64(s[16:24]),
		active:    int64(binary.BigEndian.Uint64(s[24:32])),
		length:    int64(binary.BigEndian.Uint64(s[32:40])),
	}
	copy(sb.sum[:], s[40:72])
	if sb.version != fsVersion {
		return nil, &HeaderError{Err: ErrSuperblockVersion, Detail: fmt.Sprintf("version %d, supported is %d", sb.version, fsVersion)}
	}
	if sb.length < 0 || sb.length > maxLength {
		return nil, &HeaderError{Err: ErrLengthTooLong}
	}
	if sb.counter > maxLength {
		return nil, &HeaderError{Err: ErrNotOneFFS, Detail: "superblock counter overflows"}
	}
	return sb, nil
}

// encodeSuperblock fills s, a whole sector, zeroing all padding.
func encodeSuperblock(s []byte, sb *superblock) {
	clear(s)
	binary.BigEndian.PutUint16(s[0:2], sb.version)
	binary.BigEndian.PutUint64(s[8:16], uint64(sb.counter))
	binary.BigEndian.PutUint64(s[16:24], sb.timestamp)
	binary.BigEndian.PutUint64(s[24:32], uint64(sb.active))
	binary.BigEndian.PutUint64(s[32:40], uint64(sb.length))
	copy(s[40:72], sb.sum[:])
	end := len(s) - sha256.Size
	sum := sha256.Sum256(s[:end])
	copy(s[end:], sum[:])
}

// encodeTimestamp reproduces the original's quirky encoding (86 000 s days).
func encodeTimestamp(t time.Time) uint64 {
	sec := t.Unix()
	days := sec / 86400
	if sec < 0 && sec%86400 != 0 {
		days--
	}
	ns := (sec-days*86400)*int64(time.Second) + int64(t.Nanosecond())
	return uint64(days*nsPerDay + ns)
}

// fsState is the decoded pair of superblocks: index 0 is the first sector,
// index 1 the last.
type fsState struct {
	sb  [2]*superblock
	bad [2]error
	win int   // the superblock in use
	err error // the metadata cannot be used (an unsupported version)
}

func (im *Image) superblockSector(i int) int64 {
	if i == 0 {
		return 0
	}
	return im.n - 1
}

// readSuperblocks decodes both superblocks, given sector 0. It returns nil
// when neither has a good hash (the device is not fail-safe). The choice
// follows the original's read_data: the higher counter wins, the first
// superblock on a tie; a bad hash makes the other one win; any other
// decoding error is an error.
func (im *Image) readSuperblocks(s0 []byte) (*fsState, error) {
	sl := make([]byte, im.ss)
	if err := im.readSectors(sl, im.n-1); err != nil {
		return nil, err
	}
	fs := &fsState{}
	fs.sb[0], fs.bad[0] = decodeSuperblock(s0)
	fs.sb[1], fs.bad[1] = decodeSuperblock(sl)
	if fs.bad[0] == errSuperblockHash && fs.bad[1] == errSuperblockHash {
		return nil, nil
	}
	for _, err := range fs.bad {
		if err != nil && err != errSuperblockHash {
			fs.err = err
			return fs, nil
		}
	}
	switch {
	case fs.sb[0] == nil:
		fs.win = 1
	case fs.sb[1] == nil:
		fs.win = 0
	case fs.sb[1].counter > fs.sb[0].counter:
		fs.win = 1
	}
	return fs, nil
}

func (fs *fsState) info() Info {
	sb := fs.sb[fs.win]
	info := Info{Format: FailSafe, Set: !sb.unset(), Counter: sb.counter, SHA256: sb.sum}
	if info.Set {
		info.Length = sb.length
	}
	where := [2]string{"first sector", "last sector"}
	if other := fs.sb[1-fs.win]; other == nil {
		info.Degraded = true
		info.Notes = append(info.Notes, fmt.Sprintf("the superblock in the %s is damaged; using the one in the %s", where[1-fs.win], where[fs.win]))
	} else if other.counter != sb.counter {
		info.Notes = append(info.Notes, fmt.Sprintf("the superblocks differ (counters %d and %d): a write was interrupted; using the newer one", sb.counter, other.counter))
	}
	return info
}

// firstToWrite is the superblock location to replace first: one that is not
// in use, so that the one in use survives a power cut. On a tie it is the
// last sector, as in the original.
func (fs *fsState) firstToWrite() int {
	if fs == nil || fs.err != nil {
		return 1
	}
	if fs.sb[0] == nil || fs.sb[1] == nil {
		return 1 - fs.win
	}
	if fs.sb[0].counter != fs.sb[1].counter {
		return 1 - fs.win
	}
	return 1
}

func (im *Image) readFailSafe(fs *fsState) ([]byte, error) {
	if fs.err != nil {
		return nil, fs.err
	}
	win := fs.sb[fs.win]
	if win.unset() {
		return nil, ErrUnset
	}
	data, _, err := im.readChain(win, true)
	if err == nil {
		return data, nil
	}
	// The superblock in use points to damaged data: fall back to the other
	// one when it holds an older file that is intact.
	if other := fs.sb[1-fs.win]; other != nil && !other.unset() && *other != *win {
		if d, _, err2 := im.readChain(other, true); err2 == nil {
			return d, nil
		}
	}
	return nil, err
}

// run is a half-open range of sectors [start, end).
type run struct{ start, end int64 }

// readChain reads the data chain of sb and returns the data and the sectors
// the chain occupies. With verify it checks the data's SHA-256; the sectors
// are returned even when only the checksum is wrong.
func (im *Image) readChain(sb *superblock, verify bool) ([]byte, []run, error) {
	per := im.ss - chainHeader
	need := ceilDiv(sb.length, per)
	if need > im.n-2 {
		return nil, nil, fmt.Errorf("%w: %d bytes need %d sectors, the device has %d", ErrOutOfRange, sb.length, need, im.n-2)
	}
	data := make([]byte, sb.length)
	var runs []run
	buf := make([]byte, min(need, maxBatch)*im.ss)
	cur, off := sb.active, int64(0)
	for off < sb.length {
		if cur == 0 {
			return nil, runs, fmt.Errorf("%w: early end of data", ErrCorrupt)
		}
		if cur < 1 || cur > im.n-2 {
			return nil, runs, fmt.Errorf("%w: sector %d is outside the data area", ErrCorrupt, cur)
		}
		k := min(ceilDiv(sb.length-off, per), maxBatch, im.n-1-cur)
		if err := im.readSectors(buf[:k*im.ss], cur); err != nil {
			return nil, runs, err
		}
		var i, next int64
		for {
			sec := buf[i*im.ss : (i+1)*im.ss]
			next = int64(binary.BigEndian.Uint64(sec))
			off += int64(copy(data[off:], sec[chainHeader:]))
			i++
			if off == sb.length || next != cur+i || i == k {
				break
			}
		}
		runs = append(runs, run{cur, cur + i})
		cur = next
	}
	if cur != 0 {
		return nil, runs, fmt.Errorf("%w: sector chain exceeds data", ErrCorrupt)
	}
	if verify && sha256.Sum256(data) != sb.sum {
		return nil, runs, ErrBadChecksum
	}
	return data, runs, nil
}

// inUse returns the sectors the current content occupies, which a new chain
// must not overwrite: the chains of both fail-safe superblocks (after an
// interrupted write they differ), or the data of a classic file being
// converted.
func (im *Image) inUse(l *layout) (runs []run, counter int64) {
	switch {
	case l == nil:
	case l.fs != nil && l.fs.err == nil:
		for _, sb := range l.fs.sb {
			if sb == nil {
				continue
			}
			counter = max(counter, sb.counter)
			if _, r, _ := im.readChain(sb, false); r != nil {
				runs = append(runs, r...)
			}
		}
	case l.fs == nil && l.hdr.set:
		if n := ceilDiv(int64(l.hdr.length), im.ss); n > 0 && n < im.n {
			runs = append(runs, run{1, 1 + n})
		}
	}
	return mergeRuns(runs), counter
}

func mergeRuns(runs []run) []run {
	slices.SortFunc(runs, func(a, b run) int { return cmp.Compare(a.start, b.start) })
	var out []run
	for _, r := range runs {
		if len(out) > 0 && r.start <= out[len(out)-1].end {
			out[len(out)-1].end = max(out[len(out)-1].end, r.end)
			continue
		}
		out = append(out, r)
	}
	return out
}

// allocate returns need free sectors as runs, from sector 1 upward, skipping
// used ones and never touching the last sector (the original's is_free).
func (im *Image) allocate(used []run, need int64) ([]run, error) {
	var out []run
	cur, limit := int64(1), im.n-1
	for _, u := range append(used, run{limit, limit}) {
		if need == 0 {
			break
		}
		end := min(u.start, limit)
		if end > cur {
			k := min(end-cur, need)
			out = append(out, run{cur, cur + k})
			need -= k
		}
		cur = max(cur, u.end)
	}
	if need > 0 {
		return nil, ErrTooLarge
	}
	return out, nil
}

func (im *Image) writeFailSafe(l *layout, data []byte) error {
	if im.ss < MinFailSafeSectorSize {
		return fmt.Errorf("%w for the fail-safe format: %d bytes, need at least %d", ErrSectorSize, im.ss, MinFailSafeSectorSize)
	}
	if im.n < 2 {
		return fmt.Errorf("%w: the fail-safe format needs two sectors", ErrTooLarge)
	}
	used, counter := im.inUse(l)
	per := im.ss - chainHeader
	need := ceilDiv(int64(len(data)), per)
	chain, err := im.allocate(used, need)
	if err != nil {
		var free int64 = im.n - 2
		for _, u := range used {
			free -= min(u.end, im.n-1) - max(u.start, 1)
		}
		return fmt.Errorf("%w: %d bytes need %d sectors, %d are free", ErrTooLarge, len(data), need, free)
	}
	if err := im.writeChain(chain, data); err != nil {
		return err
	}
	if err := im.sync(); err != nil {
		return err
	}
	sb := &superblock{version: fsVersion, counter: counter + 1, timestamp: encodeTimestamp(im.cfg.now()),
		length: int64(len(data)), sum: sha256.Sum256(data)}
	if len(chain) > 0 {
		sb.active = chain[0].start
	}
	return im.writeSuperblocks(sb, l.failSafe().firstToWrite())
}

// writeChain writes data into the sectors of chain, linking each to the next.
func (im *Image) writeChain(chain []run, data []byte) error {
	per := im.ss - chainHeader
	buf := make([]byte, maxBatch*im.ss)
	off := int64(0)
	for ri, r := range chain {
		for s := r.start; s < r.end; {
			k := min(r.end-s, maxBatch)
			b := buf[:k*im.ss]
			clear(b)
			for i := int64(0); i < k; i++ {
				sec := b[i*im.ss : (i+1)*im.ss]
				next := s + i + 1
				if next == r.end {
					next = 0
					if ri+1 < len(chain) {
						next = chain[ri+1].start
					}
				}
				binary.BigEndian.PutUint64(sec, uint64(next))
				off += int64(copy(sec[chainHeader:], data[off:min(off+per, int64(len(data)))]))
			}
			if err := im.writeSectors(b, s); err != nil {
				return err
			}
			s += k
		}
	}
	return nil
}

// writeSuperblocks writes sb to both superblock locations, first to the one
// given, syncing after each.
func (im *Image) writeSuperblocks(sb *superblock, first int) error {
	s := make([]byte, im.ss)
	encodeSuperblock(s, sb)
	for _, i := range []int{first, 1 - first} {
		if err := im.writeSectors(s, im.superblockSector(i)); err != nil {
			return err
		}
		if err := im.sync(); err != nil {
			return err
		}
	}
	return nil
}

func (im *Image) emptySuperblock() *superblock {
	return &superblock{version: fsVersion, timestamp: encodeTimestamp(im.cfg.now()), sum: sha256.Sum256(nil)}
}

func (im *Image) formatFailSafe(l *layout) error {
	if im.ss < MinFailSafeSectorSize || im.n < 2 {
		return fmt.Errorf("%w for the fail-safe format: need sectors of at least %d bytes and two sectors", ErrSectorSize, MinFailSafeSectorSize)
	}
	return im.writeSuperblocks(im.emptySuperblock(), l.failSafe().firstToWrite())
}

func (im *Image) deleteFailSafe(fs *fsState) error {
	used, _ := im.inUse(&layout{fs: fs})
	if err := im.writeSuperblocks(im.emptySuperblock(), fs.firstToWrite()); err != nil {
		return err
	}
	for _, u := range used {
		if err := im.zeroSectors(u.start, u.end-u.start); err != nil {
			return err
		}
	}
	if len(used) > 0 {
		return im.sync()
	}
	return nil
}
