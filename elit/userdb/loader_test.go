package userdb

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"elit.local/oneffs"
)

func TestLoaderReplace(t *testing.T) {
	demo, err := os.ReadFile("../../appliance/demo/users.json")
	if err != nil {
		t.Fatal(err)
	}
	more := []byte(`[{"name":"team","mailboxes":["a@example.net","b@example.net"]},{"name":"ops","mailboxes":["c@example.net"]}]`)
	bad := []byte(`[{"name":"ops","mailboxes":["not an address"]},{"name":"ops","mailboxes":[]}]`)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, kind := range []string{"json", "fail-safe", "classic"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "users.json")
			if kind == "json" {
				os.WriteFile(src, demo, 0o600)
			} else {
				src = filepath.Join(dir, "db.img")
				f, _ := oneffs.ParseFormat(kind)
				if err := oneffs.Create(src, demo, oneffs.WithFormat(f), oneffs.WithSize(64<<10)); err != nil {
					t.Fatal(err)
				}
			}
			l := NewLoader(src, filepath.Join(dir, "cache.json"), log, "example.org", nil)
			if err := l.Load(); err != nil {
				t.Fatal(err)
			}
			_, err := l.Replace(bad)
			var perr *Error
			if !errors.As(err, &perr) || len(perr.Problems) < 2 {
				t.Fatalf("a bad database: %v; want every problem", err)
			}
			if got, _ := ReadSource(src); string(got) != string(demo) {
				t.Fatalf("a refused database was written: %q", got)
			}
			if l.DB().Lookup("din@example.org") == nil {
				t.Fatal("the database in use changed")
			}
			db, err := l.Replace(more)
			if err != nil {
				t.Fatal(err)
			}
			if db.Len() != 2 || l.DB().Lookup("ops@example.org") == nil || l.DB().Lookup("din@example.org") != nil {
				t.Fatalf("after Replace: %d addresses, ops %v", db.Len(), l.DB().Lookup("ops@example.org"))
			}
			if got, _ := ReadSource(src); string(got) != string(more) {
				t.Fatalf("source holds %q", got)
			}
			if kind != "json" {
				im, err := oneffs.Open(src, oneffs.WithReadOnly())
				if err != nil {
					t.Fatal(err)
				}
				defer im.Close()
				info, _ := im.Stat()
				if info.Format.String() != kind {
					t.Fatalf("format %v, want %s kept", info.Format, kind)
				}
			}
		})
	}
}

// TestLoaderEmptySource: a source emptied after a good load (an empty
// file, blanks, [], an unset OneFFS image) is refused at Load and Check,
// the database in use stays and the cache keeps the last good copy; a
// fresh Loader on the empty source serves the cache; Replace refuses an
// empty database and writes nothing.
func TestLoaderEmptySource(t *testing.T) {
	demo, err := os.ReadFile("../../appliance/demo/users.json")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, c := range []struct {
		name  string
		empty func(t *testing.T, src string)
	}{
		{"empty file", func(t *testing.T, src string) { writeFile(t, src, "") }},
		{"blanks", func(t *testing.T, src string) { writeFile(t, src, " \n\t\n") }},
		{"empty array", func(t *testing.T, src string) { writeFile(t, src, "[]\n") }},
		{"unset image", func(t *testing.T, src string) {
			im, err := oneffs.Open(src)
			if err != nil {
				t.Fatal(err)
			}
			defer im.Close()
			if err := im.Delete(); err != nil {
				t.Fatal(err)
			}
		}},
		{"image of []", func(t *testing.T, src string) {
			im, err := oneffs.Open(src)
			if err != nil {
				t.Fatal(err)
			}
			defer im.Close()
			if err := im.Write([]byte("[]")); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "users.json")
			if strings.Contains(c.name, "image") {
				src = filepath.Join(dir, "db.img")
				if err := oneffs.Create(src, demo, oneffs.WithFormat(oneffs.FailSafe), oneffs.WithSize(64<<10)); err != nil {
					t.Fatal(err)
				}
			} else {
				writeFile(t, src, string(demo))
			}
			cache := filepath.Join(dir, "cache.json")
			l := NewLoader(src, cache, log, "example.org", nil)
			if err := l.Load(); err != nil {
				t.Fatal(err)
			}
			c.empty(t, src)
			for _, load := range []struct {
				name string
				fn   func()
			}{{"Check", l.Check}, {"Load", func() { l.Load() }}} { // Check first: it loads only a changed source
				load.fn()
				if l.DB().Lookup("din@example.org") == nil {
					t.Fatalf("after %s of the emptied source: din is gone (%d addresses)", load.name, l.DB().Len())
				}
				if err := l.Info().Err; err == nil || !strings.Contains(err.Error(), "no entries") {
					t.Errorf("after %s: Info().Err = %v, want no entries", load.name, err)
				}
				if got, _ := os.ReadFile(cache); string(got) != string(demo) {
					t.Fatalf("after %s: the cache holds %q, want the last good database", load.name, got)
				}
			}
			if _, err := l.Replace(nil); err == nil {
				t.Errorf("Replace with an empty database: no error")
			}
			if _, err := l.Replace([]byte("[]")); err == nil {
				t.Errorf("Replace with []: no error")
			}
			if l.DB().Lookup("din@example.org") == nil {
				t.Fatal("Replace with an empty database: din is gone")
			}
			if got, _ := os.ReadFile(cache); string(got) != string(demo) {
				t.Fatalf("after Replace: the cache holds %q", got)
			}
			// A restart on the empty source: the cache serves.
			fresh := NewLoader(src, cache, log, "example.org", nil)
			if err := fresh.Load(); err != nil {
				t.Fatalf("a fresh Loader with a good cache: %v", err)
			}
			if fresh.DB().Lookup("din@example.org") == nil || !fresh.Info().FromCache {
				t.Errorf("a fresh Loader does not serve the cache (from cache %v)", fresh.Info().FromCache)
			}
		})
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
