package config

import (
	"strings"
	"testing"
)

// TestCheck: each invalid setting is refused with one line naming it; a
// valid configuration gets its domain in canonical form and a host name.
func TestCheck(t *testing.T) {
	base := []string{"-domain", "Example.ORG", "-db-json", "users.json"}
	for _, c := range []struct {
		args []string
		want string // "" valid
	}{
		{nil, ""},
		{[]string{"-domain", ""}, "-domain is required"},
		{[]string{"-domain", "exa mple"}, "not a domain name"},
		{[]string{"-db", "db.img"}, "exactly one of -db IMG and -db-json FILE"},
		{[]string{"-hostname", "[127.0.0.1]"}, "-hostname"},
		{[]string{"-tls-cert", "cert.pem"}, "go together"},
		{[]string{"-acme", "-acme-tls-addr", ""}, "-acme needs"},
		{[]string{"-acme", "-acme-tls-addr", "", "-acme-http-addr", ":80"}, ""},
		{[]string{"-mx-addr", "nope"}, "-mx-addr"},
		{[]string{"-mx-addr", "", "-submission-addr", "", "-submissions-addr", ""}, "every listener is disabled"},
		{[]string{"-resolver", "8.8.8.8"}, "-resolver"},
		{[]string{"-smarthost", "relay"}, "-smarthost"},
		{[]string{"-max-per-destination", "0"}, "-max-per-destination"},
		{[]string{"-retry-max", "1m"}, "-retry-max at least -retry-first"},
		{[]string{"-postmaster", "not an address"}, "-postmaster"},
		{[]string{"-max-size", "0"}, "-max-size must be positive"},
		{[]string{"-max-line-length", "999"}, "at least 1000"},
		{[]string{"-error-window", "0"}, "-error-window must be positive"},
	} {
		cfg, err := load(t, append(base, c.args...)...)
		if err != nil {
			t.Fatal(err)
		}
		err = cfg.Check()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%q: %v", c.args, err)
		case c.want == "":
			if cfg.Domain != "example.org" || cfg.Hostname == "" {
				t.Errorf("%q: domain %q, host name %q", c.args, cfg.Domain, cfg.Hostname)
			}
		case err == nil || !IsInvalid(err) || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n"):
			t.Errorf("%q: %v; want an invalid configuration saying %q", c.args, err, c.want)
		}
	}
}
