package oneffs

import (
	"os"
	"path/filepath"
	"testing"
)

// benchSize is the amount of data each benchmark iteration writes or reads.
const benchSize = 64 << 20

// BenchmarkWrite writes 64 MiB through oneffs and, in the same run, with
// os.WriteFile (with and without fsync, since every oneffs Write syncs).
func BenchmarkWrite(b *testing.B) {
	data := pattern(benchSize, 1)
	for _, f := range []Format{Classic, FailSafe} {
		b.Run(f.String(), func(b *testing.B) {
			im := benchImage(b, f)
			b.SetBytes(benchSize)
			for b.Loop() {
				if err := im.Write(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("os.WriteFile", func(b *testing.B) {
		path := filepath.Join(b.TempDir(), "plain")
		b.SetBytes(benchSize)
		for b.Loop() {
			if err := os.WriteFile(path, data, 0o644); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("os.WriteFile+fsync", func(b *testing.B) {
		path := filepath.Join(b.TempDir(), "plain")
		b.SetBytes(benchSize)
		for b.Loop() {
			f, err := os.Create(path)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := f.Write(data); err != nil {
				b.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
}

// BenchmarkRead reads 64 MiB (checksum included) and compares with os.ReadFile.
func BenchmarkRead(b *testing.B) {
	data := pattern(benchSize, 1)
	for _, f := range []Format{Classic, FailSafe} {
		b.Run(f.String(), func(b *testing.B) {
			im := benchImage(b, f)
			if err := im.Write(data); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(benchSize)
			for b.Loop() {
				if _, err := im.Read(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("os.ReadFile", func(b *testing.B) {
		path := filepath.Join(b.TempDir(), "plain")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(benchSize)
		for b.Loop() {
			if _, err := os.ReadFile(path); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchImage makes an image file with room for two copies of the data (the
// fail-safe format writes the new copy beside the old one).
func benchImage(b *testing.B, f Format) *Image {
	b.Helper()
	path := filepath.Join(b.TempDir(), "bench.img")
	size := MinImageSize(2*benchSize, f, DefaultSectorSize)
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		b.Fatal(err)
	}
	im, err := Open(path, WithFormat(f))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { im.Close() })
	return im
}
