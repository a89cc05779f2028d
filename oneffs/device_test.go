package oneffs

import (
	"errors"
	"fmt"
	"io"
)

// memDevice is an in-memory Device.
type memDevice struct {
	b     []byte
	syncs int
}

func newMem(size int64) *memDevice { return &memDevice{b: make([]byte, size)} }

func (m *memDevice) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off > int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memDevice) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, fmt.Errorf("write past the end: %d+%d > %d", off, len(p), len(m.b))
	}
	return copy(m.b[off:], p), nil
}

func (m *memDevice) Sync() error { m.syncs++; return nil }

var errPowerCut = errors.New("power cut")

// pendingWrite is a write that has not been synced yet.
type pendingWrite struct {
	off  int64
	data []byte
}

// crashDevice simulates a power cut at the crashAt-th WriteAt call (counting
// from 1). Until then, writes are visible to reads at once but become durable
// only at Sync. At the cut, the crashing write may be torn, and any subset of
// the unsynced writes may or may not have reached the disk (a reordering
// write cache). After the cut every call fails.
type crashDevice struct {
	view    []byte // what reads see
	durable []byte // what survives a power cut for sure
	pending []pendingWrite
	writes  int
	crashAt int // 0: never
	torn    *pendingWrite
	cut     bool
}

func newCrash(img []byte, crashAt int) *crashDevice {
	return &crashDevice{view: clone(img), durable: clone(img), crashAt: crashAt}
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

func (c *crashDevice) ReadAt(p []byte, off int64) (int, error) {
	if c.cut {
		return 0, errPowerCut
	}
	return (&memDevice{b: c.view}).ReadAt(p, off)
}

func (c *crashDevice) WriteAt(p []byte, off int64) (int, error) {
	if c.cut {
		return 0, errPowerCut
	}
	if off < 0 || off+int64(len(p)) > int64(len(c.view)) {
		return 0, fmt.Errorf("write past the end")
	}
	c.writes++
	w := pendingWrite{off, clone(p)}
	if c.writes == c.crashAt {
		c.cut = true
		c.torn = &w
		return 0, errPowerCut
	}
	copy(c.view[off:], p)
	c.pending = append(c.pending, w)
	return len(p), nil
}

func (c *crashDevice) Sync() error {
	if c.cut {
		return errPowerCut
	}
	for _, w := range c.pending {
		copy(c.durable[w.off:], w.data)
	}
	c.pending = nil
	return nil
}

// outcomes lists the device contents a power cut may have left. ss is the
// sector size; byteTears adds tears inside a sector (for formats that claim
// to survive them).
func (c *crashDevice) outcomes(ss int64, byteTears bool) [][]byte {
	if !c.cut {
		return [][]byte{clone(c.view)}
	}
	// Which unsynced writes landed: every subset when there are few,
	// otherwise none, all, all but one, and every prefix.
	var subsets [][]bool
	n := len(c.pending)
	if n <= 6 {
		for m := 0; m < 1<<n; m++ {
			s := make([]bool, n)
			for i := range s {
				s[i] = m&(1<<i) != 0
			}
			subsets = append(subsets, s)
		}
	} else {
		for k := 0; k <= n; k++ {
			prefix := make([]bool, n)
			for i := 0; i < k; i++ {
				prefix[i] = true
			}
			subsets = append(subsets, prefix)
		}
		for skip := 0; skip < n; skip++ {
			s := make([]bool, n)
			for i := range s {
				s[i] = i != skip
			}
			subsets = append(subsets, s)
		}
	}
	// How much of the crashing write landed: sector-aligned prefixes, and
	// with byteTears also half of a sector.
	var tears []int64
	if c.torn != nil {
		k := int64(len(c.torn.data)) / ss
		for _, j := range []int64{0, 1, k / 2, k - 1, k} {
			if j >= 0 && j <= k {
				tears = append(tears, j*ss)
			}
		}
		if byteTears {
			tears = append(tears, ss/2, 9)
		}
	} else {
		tears = []int64{0}
	}
	var out [][]byte
	for _, s := range subsets {
		base := clone(c.durable)
		for i, w := range c.pending {
			if s[i] {
				copy(base[w.off:], w.data)
			}
		}
		for _, t := range tears {
			img := clone(base)
			if c.torn != nil {
				copy(img[c.torn.off:], c.torn.data[:min(t, int64(len(c.torn.data)))])
			}
			out = append(out, img)
		}
	}
	return out
}
