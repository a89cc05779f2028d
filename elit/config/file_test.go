package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// load parses args as elit serve's command line, then applies the -config
// file.
func load(t *testing.T, args ...string) (*Config, error) {
	t.Helper()
	c := Default()
	fs := c.FlagSet("elit serve", io.Discard)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return c, c.ApplyFile(fs)
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestApplyFile: the values of a -config file reach the settings exactly
// (an integer above 2^53 keeps every digit), in any JSON notation that is
// exact, and a flag given on the command line wins.
func TestApplyFile(t *testing.T) {
	for _, c := range []struct {
		name, json string
		check      func(c *Config) bool
	}{
		{"integer above 2^53", `{"max-size": 9007199254740993}`, func(c *Config) bool { return c.Receive.MaxSize == 9007199254740993 }},
		{"largest int64", `{"max-size": 9223372036854775807}`, func(c *Config) bool { return c.Receive.MaxSize == 9223372036854775807 }},
		{"exponent", `{"max-size": 2e7}`, func(c *Config) bool { return c.Receive.MaxSize == 20_000_000 }},
		{"decimal point", `{"max-recipients": 50.0}`, func(c *Config) bool { return c.Receive.MaxRecipients == 50 }},
		{"string for a number", `{"max-conns": "7"}`, func(c *Config) bool { return c.Receive.MaxConns == 7 }},
		{"boolean", `{"srs": false, "deliver": true}`, func(c *Config) bool { return !c.Receive.SRS && c.Delivery.Enabled }},
		{"duration", `{"retry-first": "90s"}`, func(c *Config) bool { return c.Delivery.RetryFirst == 90*time.Second }},
		{"number for a string", `{"delivery-port": 2525}`, func(c *Config) bool { return c.Delivery.Port == "2525" }},
		{"log level", `{"log-level": "debug"}`, func(c *Config) bool { return c.LogLevel.String() == "DEBUG" }},
		{"command line wins", `{"hostname": "file.example.org", "domain": "example.org"}`, func(c *Config) bool {
			return c.Hostname == "cli.example.org" && c.Domain == "example.org"
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeFile(t, "cfg.json", c.json)
			cfg, err := load(t, "-hostname", "cli.example.org", "-config", path)
			if err != nil {
				t.Fatalf("%s: %v", c.json, err)
			}
			if !c.check(cfg) {
				t.Errorf("%s: got %+v, %+v, hostname %q", c.json, cfg.Receive, cfg.Delivery, cfg.Hostname)
			}
		})
	}
}

// TestApplyFileTypes: a -config value of the wrong JSON type, or a number
// that does not fit, is an invalid configuration (exit 125) whose one line
// names the file, the key and what it should be.
func TestApplyFileTypes(t *testing.T) {
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
		{"unknown", `{"bogus": 1}`, `unknown setting "bogus"`},
		{"config in config", `{"config": "x.json"}`, `unknown setting "config"`},
		{"domains", `{"domains": "example.net"}`, "domains: want a list of domain names"},
		{"transports", `{"transports": {"x": {"type": "direct", "bogus": 1}}}`, `transports: json: unknown field "bogus"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeFile(t, "cfg.json", c.json)
			_, err := load(t, "-config", path)
			if err == nil || !IsInvalid(err) || !strings.Contains(err.Error(), "config "+path+": "+c.want) {
				t.Errorf("%s: %v; want an invalid configuration saying %q", c.json, err, c.want)
			}
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Errorf("more than one line: %q", err)
			}
		})
	}
	if _, err := load(t, "-config", filepath.Join(t.TempDir(), "missing.json")); !IsInvalid(err) {
		t.Errorf("a missing file: %v, want an invalid configuration", err)
	}
}
