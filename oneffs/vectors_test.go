package oneffs

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// vectorDir holds images made by the original OCaml oneffs, with manifest.json.
const vectorDir = "../../shared/oneffs/vectors"

type vector struct {
	Name      string
	BlockSize int    `json:"block_size"`
	MadeWith  string `json:"made_with"`
	SHA256    string `json:"sha256"`
	SizeBytes int64  `json:"size_bytes"`
	Expect    struct {
		State        string
		Data         string
		Length       int64
		ReadError    string `json:"read_error"`
		ConnectError string `json:"connect_error"`
		Size         int64
	}
	Header struct {
		Length    uint64
		FileCRC   string `json:"file_crc"`
		HeaderCRC string `json:"header_crc"`
		Magic     string
	}
}

func loadVectors(t testing.TB) []vector {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vectorDir, "manifest.json"))
	if err != nil {
		t.Fatalf("the OneFFS test vectors are missing: %v", err)
	}
	var m map[string]vector
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var vs []vector
	for name, v := range m {
		v.Name = name
		vs = append(vs, v)
	}
	if len(vs) < 8 {
		t.Fatalf("only %d vectors in the manifest", len(vs))
	}
	return vs
}

func sha256File(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func headerReason(msg string) error {
	switch strings.TrimPrefix(msg, "bad header: ") {
	case "Bad CRC":
		return ErrBadCRC
	case "Not a OneFFS":
		return ErrNotOneFFS
	case "Length too long":
		return ErrLengthTooLong
	}
	return nil
}

// TestVectors reads every image the original made and checks what we find
// against the manifest.
func TestVectors(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			path := filepath.Join(vectorDir, v.Name)
			if got := sha256File(t, path); got != v.SHA256 {
				t.Fatalf("vector changed: sha256 %s, manifest %s", got, v.SHA256)
			}
			im, err := Open(path, WithSectorSize(v.BlockSize), WithReadOnly())
			if err != nil {
				t.Fatal(err)
			}
			defer im.Close()
			if im.DeviceSize() != v.SizeBytes {
				t.Errorf("device size %d, want %d", im.DeviceSize(), v.SizeBytes)
			}
			info, statErr := im.Stat()
			data, readErr := im.Read()
			switch {
			case v.Expect.ConnectError != "":
				want := headerReason(v.Expect.ConnectError)
				var he *HeaderError
				if !errors.As(statErr, &he) || !errors.Is(statErr, want) {
					t.Errorf("Stat: %v, want a header error %v", statErr, want)
				}
				if !errors.Is(readErr, want) {
					t.Errorf("Read: %v, want %v", readErr, want)
				}
				if !strings.EqualFold(statErr.Error(), v.Expect.ConnectError) {
					t.Errorf("message %q, original %q", statErr, v.Expect.ConnectError)
				}
			case v.Expect.State == "unset":
				if statErr != nil || info.Set {
					t.Errorf("Stat: %+v, %v; want unset", info, statErr)
				}
				if !errors.Is(readErr, ErrUnset) {
					t.Errorf("Read: %v, want ErrUnset", readErr)
				}
			case v.Expect.ReadError == "Bad checksum":
				if statErr != nil || !info.Set || info.Length != v.Expect.Size {
					t.Errorf("Stat: %+v, %v; want set, %d bytes", info, statErr, v.Expect.Size)
				}
				if !errors.Is(readErr, ErrBadChecksum) {
					t.Errorf("Read: %v, want ErrBadChecksum", readErr)
				}
			case v.Expect.State == "set":
				want, err := os.ReadFile(filepath.Join(vectorDir, v.Expect.Data))
				if err != nil {
					t.Fatal(err)
				}
				if readErr != nil || string(data) != string(want) {
					t.Errorf("Read: %d bytes, %v; want %d bytes", len(data), readErr, len(want))
				}
				if statErr != nil || !info.Set || info.Length != v.Expect.Length || info.Format != Classic {
					t.Errorf("Stat: %+v, %v", info, statErr)
				}
				crc, _ := strconv.ParseUint(v.Header.FileCRC, 0, 32)
				if info.FileCRC != uint32(crc) {
					t.Errorf("file CRC %#x, want %s", info.FileCRC, v.Header.FileCRC)
				}
			default:
				t.Fatalf("unknown expectation %+v", v.Expect)
			}
		})
	}
}

// TestVectorsWrite remakes each vector the original made with create or set
// and compares every byte.
func TestVectorsWrite(t *testing.T) {
	vs := loadVectors(t)
	byName := map[string]vector{}
	for _, v := range vs {
		byName[v.Name] = v
	}
	made := 0
	for _, v := range vs {
		var in, base string
		switch f := strings.Fields(v.MadeWith); {
		case len(f) > 1 && f[0] == "oneffs" && f[1] == "create":
			for i := range f {
				if f[i] == "-i" {
					in = f[i+1]
				}
			}
		case strings.HasPrefix(v.MadeWith, "cp ") && strings.Contains(v.MadeWith, "oneffs set"):
			base = f[1]
			in = f[len(f)-1]
		default:
			continue
		}
		made++
		t.Run(v.Name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(vectorDir, in))
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "out.img")
			if base == "" {
				err = Create(out, data, WithSectorSize(v.BlockSize))
			} else {
				b, _ := os.ReadFile(filepath.Join(vectorDir, base))
				if err := os.WriteFile(out, b, 0o644); err != nil {
					t.Fatal(err)
				}
				err = writeFile(out, data, WithSectorSize(v.BlockSize))
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := sha256File(t, out); got != v.SHA256 {
				t.Errorf("our image differs from the original's: sha256 %s, want %s", got, v.SHA256)
			}
		})
	}
	if made < 5 {
		t.Errorf("only %d vectors remade", made)
	}
	// e1: b2, then a write of pattern10000.bin cut after its first block
	// write. Ours must leave exactly the same bytes.
	t.Run("e1_crash_after_invalidate.img", func(t *testing.T) {
		b2, _ := os.ReadFile(filepath.Join(vectorDir, "b2_userdb_64k.img"))
		data, _ := os.ReadFile(filepath.Join(vectorDir, "inputs/pattern10000.bin"))
		dev := newCrash(b2, 2)
		im, err := New(dev, int64(len(b2)))
		if err != nil {
			t.Fatal(err)
		}
		if err := im.Write(data); !errors.Is(err, errPowerCut) {
			t.Fatalf("Write: %v, want the power cut", err)
		}
		sum := sha256.Sum256(dev.durable)
		if got := hex.EncodeToString(sum[:]); got != byName["e1_crash_after_invalidate.img"].SHA256 {
			t.Errorf("after the cut: sha256 %s, want e1's", got)
		}
	})
}

func writeFile(path string, data []byte, opts ...Option) error {
	im, err := Open(path, opts...)
	if err != nil {
		return err
	}
	defer im.Close()
	return im.Write(data)
}

// TestWrongSectorSize: the sector size is not stored, so reading with the
// wrong one fails the data checksum (spec §9.1).
func TestWrongSectorSize(t *testing.T) {
	im, err := Open(filepath.Join(vectorDir, "b3_userdb_bs4096.img"), WithReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	if _, err := im.Read(); !errors.Is(err, ErrBadChecksum) {
		t.Errorf("Read with 512-byte sectors: %v, want ErrBadChecksum", err)
	}
}

func TestHeaderEncoding(t *testing.T) {
	// Spec §3 worked example and the empty/zero-length headers.
	cases := []struct {
		h    header
		want string
	}{
		{header{set: true, length: 83, crc: 0xACF92CFA}, "1f1f0000000000000053acf92cfad4a8a9e7"},
		{header{set: true, length: 0, crc: 0}, "1f1f00000000000000000000000072ea82b2"},
		{header{set: true, length: 10240, crc: 0x0C11E013}, "1f1f00000000000028000c11e01314e7c124"},
		{header{}, "1f1f0000000000000000000000000000" + "0000"},
	}
	for _, c := range cases {
		s := make([]byte, 512)
		encodeHeader(s, c.h)
		if got := hex.EncodeToString(s[:headerLen]); got != c.want {
			t.Errorf("encode %+v = %s, want %s", c.h, got, c.want)
		}
		back, err := decodeHeader(s)
		if err != nil || back != c.h {
			t.Errorf("decode(encode(%+v)) = %+v, %v", c.h, back, err)
		}
	}
	// Decoding order (spec §2.1): an unknown magic is reported before a bad
	// CRC, and a huge length after the CRC check.
	long := make([]byte, 18)
	encodeHeader(long, header{set: true, length: 1 << 62})
	if _, err := decodeHeader(long); !errors.Is(err, ErrLengthTooLong) {
		t.Errorf("length 2^62: %v", err)
	}
	bad := clone(long)
	bad[0] = 0x1e
	if _, err := decodeHeader(bad); !errors.Is(err, ErrNotOneFFS) {
		t.Errorf("bad magic: %v", err)
	}
	bad = clone(long)
	bad[17] ^= 1
	if _, err := decodeHeader(bad); !errors.Is(err, ErrBadCRC) {
		t.Errorf("bad crc: %v", err)
	}
	if h, err := decodeHeader(make([]byte, 18)); err != nil || h.set {
		t.Errorf("all zeros: %+v %v, want unset", h, err)
	}
}
