package server

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLoadKey: a missing key file is made (32 random bytes, mode 0600) and
// then kept; one shorter than 16 bytes is refused, not replaced.
func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	var logb bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logb, nil))
	path := filepath.Join(dir, "srs.key")
	key, err := loadKey(path, log)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || len(key) != 32 || fi.Mode().Perm() != 0o600 || !strings.Contains(logb.String(), "generated a key") {
		t.Fatalf("made %d bytes, %v, %v; want 32, mode 0600, logged", len(key), fi, err)
	}
	again, err := loadKey(path, log)
	if err != nil || !bytes.Equal(again, key) {
		t.Fatalf("the key was not kept: %v", err)
	}
	for _, short := range []string{"", "x", "fifteen bytes!!"} {
		if err := os.WriteFile(path, []byte(short), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := loadKey(path, log); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "at least 16") {
			t.Errorf("a key of %d bytes: %v; want an error naming the file and the minimum", len(short), err)
		}
		if got, _ := os.ReadFile(path); string(got) != short {
			t.Errorf("a key of %d bytes was replaced", len(short))
		}
	}
}

func TestWaitForClock(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	clock := time.Unix(0, 0) // a board without a clock boots in 1970
	sleeps := 0
	now := func() time.Time { return clock }
	sleep := func(d time.Duration) {
		if sleeps++; sleeps == 3 {
			clock = time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC) // NTP answered
		}
	}
	if err := waitForClock(context.Background(), log, now, sleep); err != nil || sleeps != 3 {
		t.Fatalf("waitForClock: %v after %d sleeps, want nil after 3", err, sleeps)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	clock = time.Unix(0, 0)
	if err := waitForClock(ctx, log, now, sleep); err == nil {
		t.Fatal("waitForClock with an ended context and no clock: no error")
	}
}
