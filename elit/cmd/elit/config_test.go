package main

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestApplyConfigFile: the values of a -config file reach the flags
// exactly (an integer above 2^53 keeps every digit), in any JSON notation
// that is exact, and a flag given on the command line wins.
func TestApplyConfigFile(t *testing.T) {
	for _, c := range []struct {
		name, json string
		check      func(c *serveConfig) bool
	}{
		{"integer above 2^53", `{"max-size": 9007199254740993}`, func(c *serveConfig) bool { return c.maxSize == 9007199254740993 }},
		{"largest int64", `{"max-size": 9223372036854775807}`, func(c *serveConfig) bool { return c.maxSize == 9223372036854775807 }},
		{"exponent", `{"max-size": 2e7}`, func(c *serveConfig) bool { return c.maxSize == 20_000_000 }},
		{"decimal point", `{"max-recipients": 50.0}`, func(c *serveConfig) bool { return c.maxRcpt == 50 }},
		{"string for a number", `{"max-conns": "7"}`, func(c *serveConfig) bool { return c.maxConns == 7 }},
		{"boolean", `{"srs": false, "deliver": true}`, func(c *serveConfig) bool { return !c.useSRS && c.deliver }},
		{"duration", `{"retry-first": "90s"}`, func(c *serveConfig) bool { return c.retryFirst == 90*time.Second }},
		{"number for a string", `{"delivery-port": 2525}`, func(c *serveConfig) bool { return c.deliveryPort == "2525" }},
		{"command line wins", `{"hostname": "file.example.org", "domain": "example.org"}`, func(c *serveConfig) bool {
			return c.hostname == "cli.example.org" && c.domain == "example.org"
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cfg.json")
			if err := os.WriteFile(path, []byte(c.json), 0o600); err != nil {
				t.Fatal(err)
			}
			fs, cfg, _ := serveFlags(io.Discard)
			if err := fs.Parse([]string{"-hostname", "cli.example.org"}); err != nil {
				t.Fatal(err)
			}
			if err := applyConfigFile(fs, cfg, path); err != nil {
				t.Fatalf("%s: %v", c.json, err)
			}
			if !c.check(cfg) {
				t.Errorf("%s: got max-size %d, max-recipients %d, max-conns %d, srs %v, retry-first %v, delivery-port %q, hostname %q",
					c.json, cfg.maxSize, cfg.maxRcpt, cfg.maxConns, cfg.useSRS, cfg.retryFirst, cfg.deliveryPort, cfg.hostname)
			}
		})
	}
}

// TestServeConfigTypes: a -config value of the wrong JSON type, or a
// number that does not fit, is refused with exit 125 and a line naming the
// key and what it should be.
func TestServeConfigTypes(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "users.json")
	if err := os.WriteFile(db, testDB(t), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, json, want string
	}{
		{"null number", `{"max-size": null}`, "max-size: want a number, got null"},
		{"array number", `{"max-size": [1]}`, "max-size: want a number, got an array"},
		{"object number", `{"max-recipients": {"n": 1}}`, "max-recipients: want a number, got an object"},
		{"array string", `{"hostname": ["mx.example.org"]}`, "hostname: want a string, got an array"},
		{"object string", `{"log-level": {}}`, "log-level: want a string, got an object"},
		{"null boolean", `{"srs": null}`, "srs: want a boolean, got null"},
		{"array duration", `{"retry-first": ["5m"]}`, `retry-first: want a duration (a string such as "5m"), got an array`},
		{"overflow", `{"max-size": 9223372036854775808}`, "max-size: invalid value"},
		{"fraction", `{"max-recipients": 1.5}`, "max-recipients: invalid value"},
		{"not an object", `["max-size", 1]`, "want a JSON object"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "cfg.json")
			if err := os.WriteFile(cfg, []byte(c.json), 0o600); err != nil {
				t.Fatal(err)
			}
			code, errs := runServe(t, "-config", cfg, "-domain", "example.org", "-db-json", db,
				"-state", filepath.Join(t.TempDir(), "state"), "-mx-addr", "127.0.0.1:0", "-submission-addr", "", "-submissions-addr", "")
			if code != exitFailure || !strings.Contains(errs, "config "+cfg+": "+c.want) {
				t.Errorf("%s: exit %d, stderr %q; want 125 and %q", c.json, code, errs, c.want)
			}
			if strings.Count(strings.TrimSpace(errs), "\n") != 0 {
				t.Errorf("more than one line: %q", errs)
			}
		})
	}
}

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

// TestServeShortKey: elit serve with a short STATE/srs.key refuses to
// start (exit 125, one line naming the file) and leaves the file alone.
func TestServeShortKey(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "users.json")
	if err := os.WriteFile(db, testDB(t), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(state, "srs.key")
	if err := os.WriteFile(keyPath, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, key := testCert(t, dir)
	code, errs := runServe(t, "-domain", "example.org", "-db-json", db, "-state", state, "-tls-cert", cert, "-tls-key", key,
		"-mx-addr", "127.0.0.1:0", "-submission-addr", "", "-submissions-addr", "", "-deliver=false")
	if code != exitFailure || !strings.Contains(errs, keyPath) || !strings.Contains(errs, "at least 16") {
		t.Errorf("exit %d, stderr %q; want 125 and the key file named", code, errs)
	}
	if got, _ := os.ReadFile(keyPath); string(got) != "short\n" {
		t.Errorf("the key file was replaced")
	}
}

// runServe runs the elit binary's serve with args, expecting it to refuse
// to start: it returns the exit code and standard error, or fails the test
// (after stopping it) when it is still running after 10 seconds.
func runServe(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(elitBinary(t), append([]string{"serve"}, args...)...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		return cmd.ProcessState.ExitCode(), errb.String()
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("elit serve %q started instead of refusing:\n%s", args, errb.String())
		return 0, ""
	}
}
