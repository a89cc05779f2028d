package mtasts

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"elit.local/elit/dns"
	"elit.local/elit/internal/testlib"
)

const goodPolicy = "version: STSv1\r\nmode: enforce\r\nmx: mx.example.com\r\nmx: *.mx.example.net\r\nmax_age: 86400\r\n"

// TestFetch: a policy fetched over HTTPS from a loopback server with a
// test CA, through the injected dialer; and each way a fetch must fail
// (§3.3), with the TLS report result type of the failure.
func TestFetch(t *testing.T) {
	// padded is a valid policy of n octets.
	padded := func(n int) string {
		s := goodPolicy
		for n-len(s) >= 69+5 {
			s += "x: " + strings.Repeat("p", 64) + "\r\n"
		}
		s += "y: " + strings.Repeat("p", n-len(s)-4) + "\n"
		if len(s) != n {
			panic(fmt.Sprint(len(s), n))
		}
		return s
	}
	var otherPath atomic.Int32
	handler := func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/other" {
			otherPath.Add(1)
		}
		switch r.Host {
		case "mta-sts.example.com", "mta-sts.xn--bcher-kva.example":
			if r.Method != http.MethodGet || r.URL.Path != WellKnownPath {
				http.Error(w, "wrong request "+r.Method+" "+r.URL.Path, 400)
				return
			}
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, goodPolicy)
		case "mta-sts.charset.example":
			w.Header().Set("Content-Type", `Text/Plain; charset="utf-8"`)
			fmt.Fprint(w, goodPolicy)
		case "mta-sts.lf.example":
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, strings.ReplaceAll(goodPolicy, "\r\n", "\n"))
		case "mta-sts.html.example":
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, goodPolicy)
		case "mta-sts.notype.example":
			w.Header()["Content-Type"] = nil // no sniffing either
			fmt.Fprint(w, goodPolicy)
		case "mta-sts.badtype.example":
			w.Header().Set("Content-Type", "text/plain; charset")
			fmt.Fprint(w, goodPolicy)
		case "mta-sts.missing.example":
			http.NotFound(w, r)
		case "mta-sts.error.example":
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, goodPolicy)
		case "mta-sts.nocontent.example":
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusNoContent)
		case "mta-sts.redirect.example":
			http.Redirect(w, r, "https://mta-sts.redirect.example/other", http.StatusMovedPermanently)
		case "mta-sts.redirect307.example":
			http.Redirect(w, r, "/other", http.StatusTemporaryRedirect)
		case "mta-sts.invalid.example":
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, "version: STSv1\r\nmode: enforce\r\nmax_age: 86400\r\n")
		case "mta-sts.limit.example":
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, padded(DefaultMaxSize))
		case "mta-sts.oversize.example":
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, padded(DefaultMaxSize+1))
		case "mta-sts.huge.example":
			w.Header().Set("Content-Type", "text/plain")
			for range 1024 { // 1 MiB, without Content-Length
				if _, err := fmt.Fprint(w, strings.Repeat("x", 1024)); err != nil {
					return
				}
			}
		case "mta-sts.slow.example": // no answer until the client gives up
			<-r.Context().Done()
		case "mta-sts.slowbody.example": // the header, then nothing
			// A length longer than what comes: however the response
			// ends, it is a cut body, never a whole short policy.
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Length", "1000")
			fmt.Fprint(w, "version: STSv1\r\n")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		default:
			http.NotFound(w, r)
		}
	}
	cases := []struct {
		domain  string
		failure string // "" for success
		errText string
	}{
		{"example.com", "", ""},
		{"Example.COM.", "", ""},
		{"bücher.example", "", ""},
		{"charset.example", "", ""},
		{"lf.example", "", ""},
		{"limit.example", "", ""},
		{"html.example", "sts-policy-invalid", "text/html"},
		{"notype.example", "sts-policy-invalid", "not text/plain"},
		{"badtype.example", "sts-policy-invalid", "not text/plain"},
		{"missing.example", "sts-policy-fetch-error", "404"},
		{"error.example", "sts-policy-fetch-error", "500"},
		{"nocontent.example", "sts-policy-fetch-error", "204"},
		{"redirect.example", "sts-policy-fetch-error", "not followed"},
		{"redirect307.example", "sts-policy-fetch-error", "not followed"},
		{"invalid.example", "sts-policy-invalid", "no mx"},
		{"oversize.example", "sts-policy-invalid", "over 65536 octets"},
		{"huge.example", "sts-policy-invalid", "over 65536 octets"},
		{"slow.example", "sts-policy-fetch-error", "deadline"},
		{"slowbody.example", "sts-policy-fetch-error", ""},
		{"not a domain", "sts-policy-fetch-error", "domain"},
	}
	names := []string{"mta-sts.xn--bcher-kva.example"}
	for _, tc := range cases {
		if d, err := normalizeDomain(tc.domain); err == nil {
			names = append(names, "mta-sts."+d)
		}
	}
	s := newSite(t, http.HandlerFunc(handler), names...)
	s.fetcher.Timeout = 500 * time.Millisecond

	want, _ := ParsePolicy(goodPolicy)
	for _, tc := range cases {
		t.Run(tc.domain, func(t *testing.T) {
			p, text, err := s.fetcher.Fetch(context.Background(), tc.domain)
			if tc.failure == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(p, want) {
					t.Errorf("policy %+v, want %+v", p, want)
				}
				if !strings.HasPrefix(text, "version: STSv1") {
					t.Errorf("text %.40q", text)
				}
				return
			}
			if err == nil {
				t.Fatalf("fetched %+v", p)
			}
			if got := FailureType(err); got != tc.failure {
				t.Errorf("failure %q, want %q (%v)", got, tc.failure, err)
			}
			if !strings.Contains(err.Error(), tc.errText) {
				t.Errorf("error %q does not say %q", err, tc.errText)
			}
		})
	}
	if n := otherPath.Load(); n != 0 {
		t.Errorf("a redirect was followed %d times", n)
	}
	for _, a := range s.dialedAddrs() {
		if a == "mta-sts.bücher.example:443" {
			t.Errorf("dialled %q, not in A-labels", a)
		}
	}
	if !contains(s.dialedAddrs(), "mta-sts.xn--bcher-kva.example:443") {
		t.Errorf("dialled %q, want mta-sts.xn--bcher-kva.example:443 among them", s.dialedAddrs())
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestFetchCertificate: the policy host's certificate must be valid for
// mta-sts.<domain> and chain to a trusted root (§3.3):
// sts-webpki-invalid otherwise.
func TestFetchCertificate(t *testing.T) {
	ps := &policyServer{}
	ps.set("mta-sts.example.com", goodPolicy)
	ps.set("mta-sts.example.org", goodPolicy)
	// A certificate for example.com and mx.example.com, not for
	// mta-sts.example.com; and one for mta-sts.example.org.
	wrong := newSite(t, ps, "example.com", "mx.example.com", "mta-sts.example.org")
	if _, _, err := wrong.fetcher.Fetch(context.Background(), "example.com"); FailureType(err) != "sts-webpki-invalid" || !errors.Is(err, errWebPKI) {
		t.Errorf("certificate for another name: %v", err)
	}
	if _, _, err := wrong.fetcher.Fetch(context.Background(), "example.org"); err != nil {
		t.Errorf("certificate for the name: %v", err)
	}
	// A certificate from a CA the fetcher does not trust.
	_, otherRoots := testlib.Certificate("mta-sts.example.com")
	untrusted := newSite(t, ps, "mta-sts.example.com")
	untrusted.fetcher.Roots = otherRoots
	if _, _, err := untrusted.fetcher.Fetch(context.Background(), "example.com"); FailureType(err) != "sts-webpki-invalid" {
		t.Errorf("untrusted certificate: %v", err)
	}
}

// TestFetchPlainHTTP: a policy host that speaks HTTP on port 443 is a
// failed fetch, not a policy.
func TestFetchPlainHTTP(t *testing.T) {
	ps := &policyServer{}
	ps.set("mta-sts.example.com", goodPolicy)
	s := newSite(t, ps, "mta-sts.example.com")
	plain := newPlainServer(t, ps)
	s.fetcher = &Fetcher{Roots: s.roots, DialContext: plain.dial}
	if _, _, err := s.fetcher.Fetch(context.Background(), "example.com"); FailureType(err) != "sts-policy-fetch-error" {
		t.Errorf("plain HTTP: %v", err)
	}
}

// TestFetchResolver: without a dialer, the policy host's addresses come
// from the Resolver (the server's, not the system's); a host without
// any is a failed fetch.
func TestFetchResolver(t *testing.T) {
	f := &Fetcher{Resolver: &dns.Mem{Addrs: map[string][]netip.Addr{"mta-sts.noaddr.example": nil}}, Timeout: 5 * time.Second}
	for _, d := range []string{"nxdomain.example", "noaddr.example"} {
		if _, _, err := f.Fetch(context.Background(), d); FailureType(err) != "sts-policy-fetch-error" {
			t.Errorf("%s: %v", d, err)
		}
	}
}
