package oneffs

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"
)

// state is what an image reads as: its data, or unset.
type state struct {
	unset bool
	data  []byte
}

func (s state) String() string {
	if s.unset {
		return "unset"
	}
	return fmt.Sprintf("%d bytes", len(s.data))
}

func readState(t *testing.T, img []byte, ss int) (state, error) {
	t.Helper()
	im, err := New(newMem(int64(len(img))), int64(len(img)), WithSectorSize(ss))
	if err != nil {
		t.Fatal(err)
	}
	copy(im.dev.(*memDevice).b, img)
	data, err := im.Read()
	if errors.Is(err, ErrUnset) {
		return state{unset: true}, nil
	}
	return state{data: data}, err
}

func (s state) equal(o state) bool { return s.unset == o.unset && bytes.Equal(s.data, o.data) }

type crashOp struct {
	name string
	run  func(im *Image) error
	// allowed lists the states the device may be in after a cut, given the
	// state before.
	allowed func(before state) []state
}

func crashOps(f Format, next []byte) []crashOp {
	write := crashOp{name: fmt.Sprintf("write %d bytes", len(next)), run: func(im *Image) error { return im.Write(next) }}
	if f == FailSafe {
		write.allowed = func(before state) []state { return []state{before, {data: next}} }
	} else {
		write.allowed = func(before state) []state { return []state{before, {unset: true}, {data: next}} }
	}
	toUnset := func(before state) []state { return []state{before, {unset: true}} }
	return []crashOp{
		write,
		{name: "delete", run: func(im *Image) error { return im.Delete() }, allowed: toUnset},
		{name: "format", run: func(im *Image) error { return im.Format() }, allowed: toUnset},
	}
}

// crashAll runs op on img with a power cut at every write, and checks every
// outcome. It returns the distinct outcomes.
func crashAll(t *testing.T, f Format, ss int, img []byte, before state, op crashOp) [][]byte {
	t.Helper()
	// Count the writes of an uninterrupted run.
	dev := newCrash(img, 0)
	im, err := New(dev, int64(len(img)), WithSectorSize(ss), WithFormat(f))
	if err != nil {
		t.Fatal(err)
	}
	if err := op.run(im); err != nil {
		t.Fatalf("%s without a cut: %v", op.name, err)
	}
	total := dev.writes
	seen := map[[32]byte]bool{}
	var distinct [][]byte
	for cut := 1; cut <= total+1; cut++ {
		dev := newCrash(img, cut)
		im, _ := New(dev, int64(len(img)), WithSectorSize(ss), WithFormat(f))
		err := op.run(im)
		if cut <= total && !errors.Is(err, errPowerCut) {
			t.Fatalf("%s, cut at write %d: %v, want the cut", op.name, cut, err)
		}
		for _, out := range dev.outcomes(int64(ss), f == FailSafe) {
			sum := sha256.Sum256(out)
			if seen[sum] {
				continue
			}
			seen[sum] = true
			distinct = append(distinct, out)
			got, err := readState(t, out, ss)
			if err != nil {
				t.Fatalf("%s, cut at write %d of %d: read %v (before: %s)", op.name, cut, total, err, before)
			}
			ok := false
			for _, a := range op.allowed(before) {
				ok = ok || got.equal(a)
			}
			if !ok {
				t.Fatalf("%s, cut at write %d of %d: device reads %s, before it read %s", op.name, cut, total, got, before)
			}
			// The device is usable after the cut.
			rec := newMem(int64(len(out)))
			copy(rec.b, out)
			im2, _ := New(rec, int64(len(out)), WithSectorSize(ss))
			want := pattern(200, 99)
			if err := im2.Write(want); err != nil {
				t.Fatalf("%s, cut at write %d: recovery write: %v", op.name, cut, err)
			}
			if got, err := im2.Read(); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%s, cut at write %d: recovery read %d bytes, %v", op.name, cut, len(got), err)
			}
		}
	}
	return distinct
}

// TestCrash proves the guarantees of the package doc: a power cut at any
// write, with any unsynced writes lost or kept and the cut write torn, leaves
// classic images old, unset or new, and fail-safe images old or new.
func TestCrash(t *testing.T) {
	const ss, sectors = 128, 48
	olds := map[string][]byte{"unset": nil, "small": pattern(50, 1), "large": pattern(1900, 2), "empty": {}}
	nexts := [][]byte{pattern(70, 3), pattern(2100, 4), {}}
	for _, f := range []Format{Classic, FailSafe} {
		for oname, old := range olds {
			for _, next := range nexts {
				for _, op := range crashOps(f, next) {
					if op.name != "write 70 bytes" && len(next) != 70 {
						continue // delete and format do not depend on next
					}
					t.Run(fmt.Sprintf("%s/%s/%s", f, oname, op.name), func(t *testing.T) {
						dev := newMem(sectors * ss)
						im, _ := New(dev, int64(len(dev.b)), WithSectorSize(ss), WithFormat(f))
						if err := im.Format(); err != nil {
							t.Fatal(err)
						}
						before := state{unset: true}
						if old != nil {
							if err := im.Write(old); err != nil {
								t.Fatal(err)
							}
							before = state{data: old}
						}
						crashAll(t, f, ss, dev.b, before, op)
					})
				}
			}
		}
	}
}

// TestCrashTwice: after a cut leaves a fail-safe device half-updated (the
// two superblocks differ), a second cut during the next write still leaves
// one of the two files, never an older one.
func TestCrashTwice(t *testing.T) {
	const ss, sectors = 128, 64
	a, b, c := pattern(900, 1), pattern(1000, 2), pattern(1100, 3)
	dev := newMem(sectors * ss)
	im, _ := New(dev, int64(len(dev.b)), WithSectorSize(ss), WithFormat(FailSafe))
	if err := im.Write(a); err != nil {
		t.Fatal(err)
	}
	first := crashAll(t, FailSafe, ss, dev.b, state{data: a}, crashOps(FailSafe, b)[0])
	if len(first) < 5 {
		t.Fatalf("only %d outcomes of the first cut", len(first))
	}
	for i, img := range first {
		before, err := readState(t, img, ss)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			crashAll(t, FailSafe, ss, img, before, crashOps(FailSafe, c)[0])
		})
	}
}
