package config

import (
	"bytes"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"elit.local/elit/deliver"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestLogValue: the effective configuration is logged whole, every flag
// by name, with the transports' passwords masked (testdata/log.golden).
func TestLogValue(t *testing.T) {
	c := Default()
	c.Domain, c.Hostname, c.Version = "example.org", "mx.example.org", "v1.2.3"
	c.State.Dir = "/perm/elit"
	c.Database.Image = "partname:oneffs"
	c.Domains = []string{"example.net"}
	c.Delivery.Transports = map[string]*deliver.Transport{
		"relay": {Type: "submission", Host: "smtp.example.com:587", User: "din", Password: "hunter2", Mechanism: "PLAIN"},
	}
	c.Delivery.Routes = []deliver.Route{{User: "din", Transport: "relay"}}
	var b bytes.Buffer
	log := slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))
	log.Info("configuration", "config", c)
	// One attribute a line, for the diff.
	got := strings.ReplaceAll(b.String(), " config.", "\nconfig.")
	if strings.Contains(got, "hunter2") {
		t.Errorf("the log shows a password:\n%s", got)
	}
	golden := filepath.Join("testdata", "log.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("the logged configuration differs from %s (go test -update rewrites it):\n%s", golden, got)
	}
}

// TestSecret: what counts as a secret in the log.
func TestSecret(t *testing.T) {
	for name, want := range map[string]bool{
		"password": true, "Password": true, "smtp-password": true, "client-secret": true,
		"http-password-file": false, "tls-key": false, "user": false, "passwd-file": false,
	} {
		if got := secret(name); got != want {
			t.Errorf("secret(%q) = %v, want %v", name, got, want)
		}
	}
}
