package mtasts

import (
	"context"
	"errors"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"elit.local/elit/dns"
	"elit.local/elit/dns/dnstest"
)

// TestHandler: our policy on the mta-sts. names of our domains, 404 for
// anything else.
func TestHandler(t *testing.T) {
	pol, err := NewPolicy(Enforce, 7*24*time.Hour, "mx.example.org")
	if err != nil {
		t.Fatal(err)
	}
	h := Handler(pol, "example.org", "Example.NET.", "bücher.example")
	for _, tc := range []struct {
		method, host, path string
		want               int
	}{
		{"GET", "mta-sts.example.org", WellKnownPath, 200},
		{"GET", "MTA-STS.Example.ORG:443", WellKnownPath, 200},
		{"GET", "mta-sts.example.org.", WellKnownPath, 200},
		{"GET", "mta-sts.example.net", WellKnownPath, 200},
		{"GET", "mta-sts.xn--bcher-kva.example", WellKnownPath, 200},
		{"HEAD", "mta-sts.example.org", WellKnownPath, 200},
		{"POST", "mta-sts.example.org", WellKnownPath, 404},
		{"PUT", "mta-sts.example.org", WellKnownPath, 404},
		{"GET", "example.org", WellKnownPath, 404},
		{"GET", "mx.example.org", WellKnownPath, 404},
		{"GET", "mta-sts.example.com", WellKnownPath, 404},
		{"GET", "mta-sts.sub.example.org", WellKnownPath, 404},
		{"GET", "", WellKnownPath, 404},
		{"GET", "mta-sts.example.org", "/.well-known/mta-sts.txt/", 404},
		{"GET", "mta-sts.example.org", "/.well-known/MTA-STS.txt", 404},
		{"GET", "mta-sts.example.org", "/", 404},
		{"GET", "mta-sts.example.org", "/.well-known/acme-challenge/x", 404},
	} {
		req := httptest.NewRequest(tc.method, "https://x"+tc.path, nil)
		req.Host = tc.host
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("%s %s%s: %d, want %d", tc.method, tc.host, tc.path, rec.Code, tc.want)
			continue
		}
		if tc.want != 200 {
			continue
		}
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("%s %s: Content-Type %q", tc.method, tc.host, ct)
		}
		want := pol.String()
		if tc.method == "HEAD" {
			want = ""
		}
		if rec.Body.String() != want {
			t.Errorf("%s %s: body %q, want %q", tc.method, tc.host, rec.Body, want)
		}
	}
}

// TestRecords: the records to publish, their TXT record parsed by our
// own parser, its id following the policy.
func TestRecords(t *testing.T) {
	pol, _ := NewPolicy(Testing, 24*time.Hour, "mx.example.org")
	rs := Records("example.org", "mx.example.org.", pol)
	if len(rs) != 2 {
		t.Fatalf("%d records: %+v", len(rs), rs)
	}
	txt, cname := rs[0], rs[1]
	if txt.Name != "_mta-sts.example.org." || txt.Type != "TXT" || cname.Name != "mta-sts.example.org." || cname.Type != "CNAME" || cname.Value != "mx.example.org." {
		t.Errorf("records: %+v", rs)
	}
	rec, err := ParseRecord(strings.Trim(txt.Value, `"`))
	if err != nil || rec.ID != pol.ID() {
		t.Errorf("TXT %s: %+v, %v; want id %s", txt.Value, rec, err, pol.ID())
	}
	pol2, _ := NewPolicy(Enforce, 24*time.Hour, "mx.example.org")
	if Records("example.org", "mx.example.org", pol2)[0].Value == txt.Value {
		t.Error("the TXT record did not change with the policy")
	}
}

// TestRoundTrip: our handler's policy, served over HTTPS on loopback,
// announced by the TXT record Records gives (served by a DNS server on
// loopback, through our DNS client), is found, fetched and parsed by our
// cache as the policy we published.
func TestRoundTrip(t *testing.T) {
	pol, err := NewPolicy(Enforce, 7*24*time.Hour, "mx.example.org", "mx2.example.org")
	if err != nil {
		t.Fatal(err)
	}
	s := newSite(t, Handler(pol, "example.org"), "mta-sts.example.org")
	var zone []string
	for _, r := range Records("example.org", "mx.example.org", pol) {
		zone = append(zone, r.Name+" 300 IN "+r.Type+" "+r.Value)
	}
	zone = append(zone, "mx.example.org. 300 IN A 127.0.0.1")
	resolver := &dns.Client{Server: dnstest.Serve(t, dnstest.Zone{Records: zone}), Timeout: 5 * time.Second}
	c, err := Open(Config{Dir: t.TempDir(), Resolver: resolver, Fetcher: s.fetcher})
	if err != nil {
		t.Fatal(err)
	}
	r := c.Policy(context.Background(), "example.org")
	if r.Err != nil || r.Policy == nil || !reflect.DeepEqual(*r.Policy, pol) || r.ID != pol.ID() {
		t.Fatalf("fetched %+v, want %+v with id %s", r, pol, pol.ID())
	}
	if !reflect.DeepEqual(r.Lines, Lines(pol.String())) {
		t.Errorf("lines %q", r.Lines)
	}
	if d := r.Decide("mx2.example.org"); !d.Enforce || d.Err != nil {
		t.Errorf("our own MX: %+v", d)
	}
	if d := r.Decide("mx.attacker.example"); !errors.Is(d.Err, ErrMXMismatch) {
		t.Errorf("another MX: %+v", d)
	}
}

// TestLookupRecord: the TXT record's selection (§3.1) through the
// in-memory resolver.
func TestLookupRecord(t *testing.T) {
	m := &dns.Mem{
		TXTs: map[string][]string{
			"_mta-sts.one.example":      {"v=STSv1; id=one;"},
			"_mta-sts.others.example":   {"google-site-verification=abc", "v=STSv1; id=mine", "v=spf1 -all", "v=STSv10; id=no"},
			"_mta-sts.space.example":    {"v=STSv1 ; id=spaced", "other"},
			"_mta-sts.two.example":      {"v=STSv1; id=a", "v=STSv1; id=b"},
			"_mta-sts.twoforms.example": {"v=STSv1; id=a", "v=STSv1 ;id=b"},
			"_mta-sts.bad.example":      {"v=STSv1; id=not-valid"},
			"_mta-sts.badother.example": {"v=STSv1; id=good", "v=STSv1"},
			"_mta-sts.none.example":     {"v=spf1 -all"},
			"_mta-sts.target.example":   {"v=STSv1; id=target"},
			"empty.example":             {"v=spf1 -all"},
		},
		Addrs:  map[string][]netip.Addr{"_mta-sts.notxt.example": nil},
		CNAMEs: map[string]string{"_mta-sts.alias.example": "_mta-sts.target.example"},
		Fail:   map[string]error{"_mta-sts.fail.example TXT": errors.New("SERVFAIL")},
	}
	for _, tc := range []struct {
		domain, id string
		noRecord   bool // else a temporary failure when id is ""
	}{
		{"one.example", "one", false},
		{"others.example", "mine", false},
		{"space.example", "spaced", false},
		{"alias.example", "target", false},
		{"two.example", "", true},
		{"twoforms.example", "", true},
		{"bad.example", "", true},
		{"badother.example", "", true},
		{"none.example", "", true},
		{"nxdomain.example", "", true},
		{"empty.example", "", true},
		{"notxt.example", "", true},
		{"fail.example", "", false},
	} {
		rec, txt, err := LookupRecord(context.Background(), m, tc.domain)
		switch {
		case tc.id != "":
			if err != nil || rec.ID != tc.id || !strings.Contains(txt, tc.id) {
				t.Errorf("%s: %+v %q %v, want id %s", tc.domain, rec, txt, err, tc.id)
			}
		case tc.noRecord:
			if !errors.Is(err, ErrNoRecord) {
				t.Errorf("%s: %+v %v, want ErrNoRecord", tc.domain, rec, err)
			}
		default:
			if !errors.Is(err, dns.ErrTemporary) || errors.Is(err, ErrNoRecord) {
				t.Errorf("%s: %+v %v, want a temporary failure", tc.domain, rec, err)
			}
		}
	}
}

// TestLookupRecordStrings: a record in several strings is their
// concatenation (§3.1), through our DNS client and a server on loopback.
func TestLookupRecordStrings(t *testing.T) {
	addr := dnstest.Serve(t, dnstest.Zone{Records: []string{
		`_mta-sts.example.com. 300 IN TXT "v=STSv1; " "id=20160831085700Z;"`,
		`_mta-sts.example.net. 300 IN CNAME _mta-sts.provider.example.`,
		`_mta-sts.provider.example. 300 IN TXT "v=STSv1; id=provider"`,
	}})
	c := &dns.Client{Server: addr, Timeout: 5 * time.Second}
	for domain, id := range map[string]string{"example.com": "20160831085700Z", "example.net": "provider"} {
		rec, _, err := LookupRecord(context.Background(), c, domain)
		if err != nil || rec.ID != id {
			t.Errorf("%s: %+v, %v; want id %s", domain, rec, err, id)
		}
	}
}
