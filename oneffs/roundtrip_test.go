package oneffs

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

func pattern(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// origFailSafeRead follows the original's Filesystem.read_data step by step
// (lib/fail_safe/filesystem.ml, spec App. A), as an independent check that
// the original reads the fail-safe images we write. initialised is false
// when the original would (re)initialise the device instead.
func origFailSafeRead(img []byte, ss int) (data []byte, initialised bool, err error) {
	n := len(img) / ss
	type sb struct {
		counter, active, length int64
		sum                     []byte
	}
	decode := func(s []byte) (*sb, error) {
		mid := len(s) - 32
		if h := sha256.Sum256(s[:mid]); !bytes.Equal(h[:], s[mid:]) {
			return nil, errSuperblockHash
		}
		if v := binary.BigEndian.Uint16(s); v != 1 {
			return nil, fmt.Errorf("superblock version %d", v)
		}
		c, l := int64(binary.BigEndian.Uint64(s[8:])), int64(binary.BigEndian.Uint64(s[32:]))
		if c > maxLength || l > maxLength {
			return nil, fmt.Errorf("integer overflow")
		}
		return &sb{c, int64(binary.BigEndian.Uint64(s[24:])), l, s[40:72]}, nil
	}
	a, ea := decode(img[:ss])
	b, eb := decode(img[(n-1)*ss:])
	var use *sb
	switch {
	case ea == nil && eb == nil:
		use = a
		if b.counter > a.counter {
			use = b
		}
	case ea == errSuperblockHash && eb == nil:
		use = b
	case ea == nil && eb == errSuperblockHash:
		use = a
	case ea == errSuperblockHash && eb == errSuperblockHash:
		return nil, false, nil
	case ea != nil && ea != errSuperblockHash:
		return nil, true, ea
	default:
		return nil, true, eb
	}
	if use.length < 0 {
		return nil, true, fmt.Errorf("negative length")
	}
	out := make([]byte, 0, use.length)
	rest, sector := use.length, use.active
	for {
		switch {
		case sector == 0 && rest == 0:
			if h := sha256.Sum256(out); !bytes.Equal(h[:], use.sum) {
				return nil, true, fmt.Errorf("bad data checksum")
			}
			return out, true, nil
		case sector != 0 && rest != 0:
			if sector < 0 || sector >= int64(n) {
				return nil, true, fmt.Errorf("block read past the end")
			}
			s := img[sector*int64(ss) : (sector+1)*int64(ss)]
			k := min(rest, int64(ss-8))
			out = append(out, s[8:8+k]...)
			rest -= k
			sector = int64(binary.BigEndian.Uint64(s))
		case sector == 0:
			return nil, true, fmt.Errorf("early end of data")
		default:
			return nil, true, fmt.Errorf("sector chain exceeds data")
		}
	}
}

func formatsFor(ss int) []Format {
	if ss >= MinFailSafeSectorSize {
		return []Format{Classic, FailSafe}
	}
	return []Format{Classic}
}

func TestRoundTrip(t *testing.T) {
	for _, ss := range []int{18, 100, 512, 4096} {
		for _, f := range formatsFor(ss) {
			sizes := []int{0, 1, ss - 9, ss - 8, ss - 1, ss, ss + 1, 3*ss + 7, 100_000}
			maxSize := int64(100_000)
			sectors := MinImageSize(2*maxSize, f, ss)/int64(ss) + 4
			t.Run(fmt.Sprintf("%s/ss=%d", f, ss), func(t *testing.T) {
				dev := newMem(sectors * int64(ss))
				im, err := New(dev, int64(len(dev.b)), WithSectorSize(ss), WithFormat(f))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := im.Read(); !errors.Is(err, ErrUnset) {
					t.Fatalf("blank device: %v, want ErrUnset", err)
				}
				for i, n := range sizes {
					data := pattern(n, uint64(i))
					if err := im.Write(data); err != nil {
						t.Fatalf("Write %d bytes: %v", n, err)
					}
					got, err := im.Read()
					if err != nil || !bytes.Equal(got, data) {
						t.Fatalf("Read after writing %d bytes: %d bytes, %v", n, len(got), err)
					}
					info, err := im.Stat()
					if err != nil || !info.Set || info.Length != int64(n) || info.Format != f {
						t.Fatalf("Stat after writing %d bytes: %+v, %v", n, info, err)
					}
					if len(info.Notes) > 0 {
						t.Errorf("notes on a healthy image: %q", info.Notes)
					}
					if f == FailSafe {
						orig, ok, err := origFailSafeRead(dev.b, ss)
						if err != nil || !ok || !bytes.Equal(orig, data) {
							t.Fatalf("the original would read %d bytes, %v, %v; want %d", len(orig), ok, err, n)
						}
					}
					// A second Image on the same device sees the same file.
					im2, _ := New(dev, int64(len(dev.b)), WithSectorSize(ss))
					if got, err := im2.Read(); err != nil || !bytes.Equal(got, data) {
						t.Fatalf("fresh Image: %d bytes, %v", len(got), err)
					}
				}
				if err := im.Delete(); err != nil {
					t.Fatal(err)
				}
				if _, err := im.Read(); !errors.Is(err, ErrUnset) {
					t.Fatalf("after Delete: %v, want ErrUnset", err)
				}
				if sz, err := im.Size(); !errors.Is(err, ErrUnset) {
					t.Fatalf("Size after Delete: %d, %v", sz, err)
				}
				last := pattern(sizes[len(sizes)-1], uint64(len(sizes)-1))
				if bytes.Contains(dev.b, last[:64]) {
					t.Errorf("Delete left the file's data on the device")
				}
				if info, err := im.Stat(); err != nil || info.Format != f {
					t.Errorf("after Delete: %+v, %v; want format %s", info, err, f)
				}
			})
		}
	}
}

// TestTooLarge: data that does not fit is refused before anything changes.
func TestTooLarge(t *testing.T) {
	for _, f := range []Format{Classic, FailSafe} {
		t.Run(f.String(), func(t *testing.T) {
			dev := newMem(16 * 512)
			im, _ := New(dev, int64(len(dev.b)), WithFormat(f))
			old := pattern(3000, 1)
			if err := im.Write(old); err != nil {
				t.Fatal(err)
			}
			before := clone(dev.b)
			syncs := dev.syncs
			// Classic: 15 sectors of room; fail-safe: 14 minus the 6 the old file uses.
			for _, n := range []int{15*512 + 1, 9 * 504, 1 << 20} {
				if f == Classic && n <= 15*512 {
					continue
				}
				if err := im.Write(pattern(n, 2)); !errors.Is(err, ErrTooLarge) {
					t.Errorf("Write %d bytes: %v, want ErrTooLarge", n, err)
				}
			}
			if !bytes.Equal(before, dev.b) || dev.syncs != syncs {
				t.Errorf("a refused write changed the device")
			}
			if got, err := im.Read(); err != nil || !bytes.Equal(got, old) {
				t.Errorf("old file: %d bytes, %v", len(got), err)
			}
		})
	}
}

func TestConvert(t *testing.T) {
	dev := newMem(64 * 512)
	classic, _ := New(dev, int64(len(dev.b)), WithFormat(Classic))
	a, b, c := pattern(5000, 1), pattern(7000, 2), pattern(300, 3)
	if err := classic.Write(a); err != nil {
		t.Fatal(err)
	}
	fs, _ := New(dev, int64(len(dev.b)), WithFormat(FailSafe))
	if err := fs.Write(b); err != nil {
		t.Fatal(err)
	}
	// Without WithFormat, the detected format is kept.
	plain, _ := New(dev, int64(len(dev.b)))
	if info, _ := plain.Stat(); info.Format != FailSafe {
		t.Fatalf("after conversion: %+v", info)
	}
	if err := plain.Write(c); err != nil {
		t.Fatal(err)
	}
	if info, _ := plain.Stat(); info.Format != FailSafe || info.Counter != 2 {
		t.Errorf("a write kept the format: %+v", info)
	}
	// And back to classic: the stale fail-safe superblock must not confuse
	// detection, even after Format.
	if err := classic.Write(a); err != nil {
		t.Fatal(err)
	}
	if got, err := plain.Read(); err != nil || !bytes.Equal(got, a) {
		t.Errorf("back to classic: %d bytes, %v", len(got), err)
	}
	if err := classic.Format(); err != nil {
		t.Fatal(err)
	}
	if info, err := plain.Stat(); err != nil || info.Format != Classic || info.Set {
		t.Errorf("after classic Format: %+v, %v", info, err)
	}
}

// TestCorruptHeaderCanBeOverwritten: the original cannot `set` over a bad
// header (spec §9.6); we can.
func TestCorruptHeaderCanBeOverwritten(t *testing.T) {
	dev := newMem(8 * 512)
	im, _ := New(dev, int64(len(dev.b)))
	if err := im.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	dev.b[3] ^= 0xff
	var he *HeaderError
	if _, err := im.Read(); !errors.As(err, &he) || !errors.Is(err, ErrBadCRC) {
		t.Fatalf("corrupt header: %v", err)
	}
	if err := im.Write([]byte("again")); err != nil {
		t.Fatal(err)
	}
	if got, err := im.Read(); err != nil || string(got) != "again" {
		t.Errorf("%q, %v", got, err)
	}
	dev.b[0] = 0x42
	if err := im.Format(); err != nil {
		t.Fatal(err)
	}
	if _, err := im.Read(); !errors.Is(err, ErrUnset) {
		t.Errorf("after Format: %v", err)
	}
}

// TestFailSafeQuirks: the original's zero-length write makes its device
// unreadable (spec App. A); ours stays readable by both, and the padding is
// zeroed so images depend only on the data, counter and clock.
func TestFailSafeQuirks(t *testing.T) {
	clock := WithClock(func() time.Time { return time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC) })
	dev := newMem(32 * 512)
	im, _ := New(dev, int64(len(dev.b)), WithFormat(FailSafe), clock)
	if err := im.Write(pattern(1000, 1)); err != nil {
		t.Fatal(err)
	}
	if err := im.Write(nil); err != nil {
		t.Fatal(err)
	}
	got, err := im.Read()
	if err != nil || len(got) != 0 {
		t.Fatalf("empty file: %d bytes, %v", len(got), err)
	}
	if d, ok, err := origFailSafeRead(dev.b, 512); err != nil || !ok || len(d) != 0 {
		t.Fatalf("the original would read %d bytes, %v", len(d), err)
	}
	if !bytes.Equal(dev.b[:512], dev.b[len(dev.b)-512:]) {
		t.Errorf("the two superblocks differ")
	}
	if !bytes.Equal(dev.b[2:8], make([]byte, 6)) || !bytes.Equal(dev.b[72:512-32], make([]byte, 512-104)) {
		t.Errorf("superblock padding is not zero")
	}
	// 2026-11-22 is day 20779: 20779 * 86 000e9 ns (the original's value was 1.787e18).
	if ts := binary.BigEndian.Uint64(dev.b[16:24]); ts != 20779*86_000_000_000_000 {
		t.Errorf("timestamp %d", ts)
	}
	// A fresh Format is "unset" for us (the original reads it as empty data).
	if err := im.Format(); err != nil {
		t.Fatal(err)
	}
	if _, err := im.Read(); !errors.Is(err, ErrUnset) {
		t.Errorf("after Format: %v", err)
	}
}

// TestFailSafeDamage: one damaged superblock or a damaged newest chain is
// survived, and reported in Info.Notes.
func TestFailSafeDamage(t *testing.T) {
	dev := newMem(64 * 512)
	im, _ := New(dev, int64(len(dev.b)), WithFormat(FailSafe))
	old, cur := pattern(2000, 1), pattern(2500, 2)
	im.Write(old)
	im.Write(cur)
	for _, which := range []int{0, 1} {
		d := newMem(int64(len(dev.b)))
		copy(d.b, dev.b)
		off := int64(which) * (int64(len(d.b)) - 512)
		d.b[off+100] ^= 1
		im2, _ := New(d, int64(len(d.b)))
		if got, err := im2.Read(); err != nil || !bytes.Equal(got, cur) {
			t.Errorf("superblock %d damaged: %d bytes, %v", which, len(got), err)
		}
		if info, _ := im2.Stat(); len(info.Notes) != 1 {
			t.Errorf("notes: %q", info.Notes)
		}
	}
	// The newest chain's data damaged, the other superblock still points to
	// the intact older file (as after an interrupted write): fall back to it.
	d := newMem(int64(len(dev.b)))
	copy(d.b, dev.b)
	oldSB := make([]byte, 512)
	im3, _ := New(d, int64(len(d.b)), WithFormat(FailSafe))
	// Make the last superblock describe the old file: rewrite it by hand.
	sb := &superblock{version: 1, counter: 1, active: 1, length: int64(len(old)), sum: sha256.Sum256(old)}
	encodeSuperblock(oldSB, sb)
	copy(d.b[len(d.b)-512:], oldSB)
	newest := int64(binary.BigEndian.Uint64(d.b[24:32]))
	d.b[newest*512+20] ^= 1
	if got, err := im3.Read(); err != nil || !bytes.Equal(got, old) {
		t.Errorf("fallback: %d bytes, %v", len(got), err)
	}
}
