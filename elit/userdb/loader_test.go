package userdb

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
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
