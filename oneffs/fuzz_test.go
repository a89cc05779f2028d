package oneffs

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the fuzz seed corpora in testdata/fuzz")

// seedImages are small images of both formats: the original's vectors and
// fail-safe images we write.
func seedImages(t testing.TB) map[string][]byte {
	seeds := map[string][]byte{}
	for _, v := range loadVectors(t) {
		if v.SizeBytes > 16<<10 {
			continue
		}
		b, err := os.ReadFile(filepath.Join(vectorDir, v.Name))
		if err != nil {
			t.Fatal(err)
		}
		seeds[strings.TrimSuffix(v.Name, ".img")] = b
	}
	clock := WithClock(func() time.Time { return time.Unix(1_800_000_000, 0) })
	for _, n := range []int{0, 300, 2000} {
		dev := newMem(24 * 128)
		im, _ := New(dev, int64(len(dev.b)), WithSectorSize(128), WithFormat(FailSafe), clock)
		if err := im.Write(pattern(n, uint64(n))); err != nil {
			t.Fatal(err)
		}
		seeds[fmt.Sprintf("failsafe_%d", n)] = dev.b
	}
	return seeds
}

func corpusFile(args ...any) string {
	var b strings.Builder
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		case uint16:
			fmt.Fprintf(&b, "uint16(%d)\n", v)
		}
	}
	return b.String()
}

// TestFuzzSeeds keeps the committed seed corpora equal to what the vectors
// give (go test -run TestFuzzSeeds -update rewrites them).
func TestFuzzSeeds(t *testing.T) {
	files := map[string]string{}
	for name, img := range seedImages(t) {
		ss := 512
		if strings.HasPrefix(name, "failsafe") {
			ss = 128
		} else if strings.Contains(name, "bs4096") {
			ss = 4096
		}
		files["FuzzDecodeHeader/"+name] = corpusFile(img[:32])
		if strings.HasPrefix(name, "failsafe") {
			files["FuzzDecodeSuperblock/"+name] = corpusFile(img[:ss])
		}
		files["FuzzImage/"+name] = corpusFile(img, uint16(ss))
	}
	for name, want := range files {
		path := filepath.Join("testdata", "fuzz", name)
		if *update {
			os.MkdirAll(filepath.Dir(path), 0o755)
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != want {
			t.Errorf("%s is missing or stale (%v): run go test ./oneffs -run TestFuzzSeeds -update", path, err)
		}
	}
}

func FuzzDecodeHeader(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		s := make([]byte, max(len(b), headerLen))
		copy(s, b)
		h, err := decodeHeader(s)
		if err != nil || !h.set {
			return
		}
		re := make([]byte, headerLen)
		encodeHeader(re, h)
		if !bytes.Equal(re, s[:headerLen]) {
			t.Fatalf("decoded %+v, re-encoded %x, input %x", h, re, s[:headerLen])
		}
	})
}

func FuzzDecodeSuperblock(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < MinFailSafeSectorSize {
			return
		}
		sb, err := decodeSuperblock(b)
		if err != nil {
			return
		}
		re := make([]byte, len(b))
		encodeSuperblock(re, sb)
		back, err := decodeSuperblock(re)
		if err != nil || *back != *sb {
			t.Fatalf("decode(encode(%+v)) = %+v, %v", sb, back, err)
		}
	})
}

// FuzzImage opens arbitrary bytes as an image: nothing may panic, and a
// write that is accepted must read back.
func FuzzImage(f *testing.F) {
	f.Fuzz(func(t *testing.T, img []byte, ssRaw uint16) {
		ss := MinSectorSize + int(ssRaw)%600
		img = img[:len(img)/ss*ss]
		if len(img) < ss {
			return
		}
		dev := &memDevice{b: clone(img)}
		im, err := New(dev, int64(len(img)), WithSectorSize(ss))
		if err != nil {
			t.Fatal(err)
		}
		im.Stat()
		im.Read()
		data := []byte("fuzz")
		if err := im.Write(data); err != nil {
			return
		}
		if got, err := im.Read(); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("after a successful write: %q, %v", got, err)
		}
		if err := im.Delete(); err != nil {
			t.Fatal(err)
		}
	})
}
