package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

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

// TestServeConfigErrors: an invalid configuration is one line and exit 125.
func TestServeConfigErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "users.json")
	os.WriteFile(good, testDB(t), 0o600)
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`[{"name":"x","mailboxes":"nope"}]`), 0o600)
	cfg := filepath.Join(dir, "cfg.json")
	os.WriteFile(cfg, []byte(`{"bogus": 1}`), 0o600)
	state := filepath.Join(dir, "state")
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no domain", []string{"-db-json", good}, "-domain is required"},
		{"no db", []string{"-domain", "example.org"}, "exactly one of -db"},
		{"both dbs", []string{"-domain", "example.org", "-db", good, "-db-json", good}, "exactly one of -db"},
		{"bad domain", []string{"-domain", "exa mple", "-db-json", good}, "not a domain"},
		{"bad db", []string{"-domain", "example.org", "-db-json", bad, "-state", state}, "invalid user database"},
		{"missing db", []string{"-domain", "example.org", "-db-json", filepath.Join(dir, "none"), "-state", state}, "no such file"},
		{"bad config", []string{"-config", cfg, "-domain", "example.org", "-db-json", good}, `unknown setting "bogus"`},
		{"bad addr", []string{"-domain", "example.org", "-db-json", good, "-mx-addr", "nope"}, "-mx-addr"},
		{"cert without key", []string{"-domain", "example.org", "-db-json", good, "-tls-cert", good}, "go together"},
		{"bad size", []string{"-domain", "example.org", "-db-json", good, "-max-size", "0"}, "-max-size"},
		{"bad flag", []string{"-nope"}, "flag provided but not defined"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, errs := runElit("", append([]string{"serve"}, c.args...)...)
			if code != exitFailure || !strings.Contains(errs, c.want) {
				t.Errorf("exit %d, stderr %q; want 125 and %q", code, errs, c.want)
			}
			if c.name != "bad flag" && strings.Count(strings.TrimSpace(errs), "\n") != 0 {
				t.Errorf("more than one line: %q", errs)
			}
		})
	}
	if code, _, errs := runElit("", "serve", "-h"); code != 0 || !strings.Contains(errs, "-submissions-addr") {
		t.Errorf("serve -h: exit %d\n%s", code, errs)
	}
}
