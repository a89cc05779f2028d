package spf

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"elit.local/elit/dns"
	"elit.local/elit/dns/dnstest"
	"elit.local/elit/internal/testlib"
)

// TestCheck: the identities and what a Result says besides its verdict.
func TestCheck(t *testing.T) {
	r := &dns.Mem{
		TXTs: map[string][]string{
			"example.org":           {"v=spf1 ip4:192.0.2.0/24 -all exp=why.example.org", "google-site-verification=x"},
			"why.example.org":       {"%{i} may not send for %{d}, ask %{r} at %{t}"},
			"mail.example.org":      {"v=spf1 a -all"},
			"soft.example.org":      {"v=spf1 include:example.org ~all"},
			"temp.example.org":      {"v=spf1 a:broken.example.org -all"},
			"bad.example.org":       {"v=spf1 ip4:192.0.2.300 -all"},
			"two.example.org":       {"v=spf1 -all", "v=spf1 +all"},
			"xn--bcher-kva.example": {"v=spf1 ip4:192.0.2.25 -all"},
		},
		Addrs: map[string][]netip.Addr{"mail.example.org": {netip.MustParseAddr("192.0.2.25")}},
		Fail:  map[string]error{"broken.example.org": errors.New("SERVFAIL")},
	}
	clock := func() time.Time { return time.Unix(1700000000, 0) }
	ctx := context.Background()
	inside, outside := netip.MustParseAddr("192.0.2.25"), netip.MustParseAddr("198.51.100.7")
	for _, tc := range []struct {
		name           string
		res            Result
		want           Verdict
		identity       string
		sender, domain string
		mechanism      string
		explanation    string
		temporary      bool
	}{
		{"pass", Check(ctx, r, inside, "mail.example.org", "user@Example.ORG"),
			Pass, MailFrom, "user@example.org", "example.org", "ip4:192.0.2.0/24", "", false},
		{"fail with exp", Check(ctx, r, outside, "x.example.net", "user@example.org", WithReceiver("mx.elit.example"), WithClock(clock)),
			Fail, MailFrom, "user@example.org", "example.org", "-all",
			"198.51.100.7 may not send for example.org, ask mx.elit.example at 1700000000", false},
		// §2.4: the null sender is postmaster@HELO.
		{"null sender", Check(ctx, r, inside, "mail.example.org", ""),
			Pass, MailFrom, "postmaster@mail.example.org", "mail.example.org", "a", "", false},
		// §4.3: no local part is postmaster.
		{"no local part", Check(ctx, r, outside, "x", "@example.org", WithClock(clock)),
			Fail, MailFrom, "postmaster@example.org", "example.org", "-all", "198.51.100.7 may not send for example.org, ask unknown at 1700000000", false},
		{"helo", CheckHelo(ctx, r, inside, "mail.example.org"),
			Pass, Helo, "postmaster@mail.example.org", "mail.example.org", "a", "", false},
		{"helo literal", CheckHelo(ctx, r, inside, "[192.0.2.25]"),
			None, Helo, "postmaster@[192.0.2.25]", "[192.0.2.25]", "", "", false},
		{"helo one label", CheckHelo(ctx, r, inside, "localhost"),
			None, Helo, "postmaster@localhost", "localhost", "", "", false},
		{"helo address", CheckHelo(ctx, r, inside, "192.0.2.25"),
			None, Helo, "postmaster@192.0.2.25", "192.0.2.25", "", "", false},
		// RFC 8616 §4: the domain of an SMTPUTF8 address is asked in A-labels.
		{"idn", Check(ctx, r, inside, "x", "ü@Bücher.example"),
			Pass, MailFrom, "ü@xn--bcher-kva.example", "xn--bcher-kva.example", "ip4:192.0.2.25", "", false},
		{"no record", Check(ctx, r, inside, "x", "a@nowhere.example"),
			None, MailFrom, "a@nowhere.example", "nowhere.example", "", "", false},
		{"softfail through include", Check(ctx, r, outside, "x", "a@soft.example.org"),
			SoftFail, MailFrom, "a@soft.example.org", "soft.example.org", "~all", "", false},
		{"temperror", Check(ctx, r, inside, "x", "a@temp.example.org"),
			TempError, MailFrom, "a@temp.example.org", "temp.example.org", "", "", true},
		{"permerror", Check(ctx, r, inside, "x", "a@bad.example.org"),
			PermError, MailFrom, "a@bad.example.org", "bad.example.org", "", "", false},
		{"two records", Check(ctx, r, inside, "x", "a@two.example.org"),
			PermError, MailFrom, "a@two.example.org", "two.example.org", "", "", false},
		{"mapped address", Check(ctx, r, netip.MustParseAddr("::ffff:192.0.2.25"), "x", "a@example.org"),
			Pass, MailFrom, "a@example.org", "example.org", "ip4:192.0.2.0/24", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := tc.res
			if res.Result != tc.want || res.Identity != tc.identity || res.Sender != tc.sender || res.Domain != tc.domain || res.Mechanism != tc.mechanism {
				t.Errorf("got %+v", res)
			}
			if res.Explanation != tc.explanation {
				t.Errorf("explanation %q, want %q", res.Explanation, tc.explanation)
			}
			if errors.Is(res.Err, dns.ErrTemporary) != tc.temporary {
				t.Errorf("err %v: temporary %v", res.Err, !tc.temporary)
			}
			if (res.Result == TempError || res.Result == PermError) && res.Err == nil {
				t.Error("no Err for an error")
			}
		})
	}
}

// TestMacro: macro expansion (RFC 7208 §7.4's examples).
func TestMacro(t *testing.T) {
	c := &checker{ip: netip.MustParseAddr("192.0.2.3"), local: "strong-bad", senderDomain: "email.example.com", helo: "mx.example.org"}
	c6 := &checker{ip: netip.MustParseAddr("2001:db8::cb01"), local: "strong-bad", senderDomain: "email.example.com"}
	for _, tc := range []struct {
		c       *checker
		in, out string
	}{
		{c, "%{s}", "strong-bad@email.example.com"},
		{c, "%{o}", "email.example.com"},
		{c, "%{d}", "email.example.com"},
		{c, "%{d4}", "email.example.com"},
		{c, "%{d3}", "email.example.com"},
		{c, "%{d2}", "example.com"},
		{c, "%{d1}", "com"},
		{c, "%{dr}", "com.example.email"},
		{c, "%{d2r}", "example.email"},
		{c, "%{l}", "strong-bad"},
		{c, "%{l-}", "strong.bad"},
		{c, "%{lr}", "strong-bad"},
		{c, "%{lr-}", "bad.strong"},
		{c, "%{l1r-}", "strong"},
		{c, "%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"},
		{c, "%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"},
		{c, "%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "bad.strong.lp.3.2.0.192.in-addr._spf.example.com"},
		{c, "%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "3.2.0.192.in-addr.strong.lp._spf.example.com"},
		{c, "%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net"},
		{c, "%{S}", "strong-bad%40email.example.com"},
		{c, "%%%_%-", "% %20"},
		{c6, "%{ir}.%{v}._spf.%{d2}", "1.0.B.C.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2.ip6._spf.example.com"},
	} {
		ms, err := parseMacroString(tc.in, false)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if got := ms.expand(tc.c.value("email.example.com", false)); got != tc.out {
			t.Errorf("%s = %q, want %q", tc.in, got, tc.out)
		}
	}
	for _, bad := range []string{"%", "%x", "%{", "%{x}", "%{d0}", "%{d2r!}", "%{c}", "a b", "\x80"} {
		if _, err := parseMacroString(bad, false); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// TestPySPF checks a table of cases against pyspf (Debian python3-spf,
// from the author of the RFC 7208 test suite), both resolving the same
// zone from a DNS server on loopback: our Check through dns.Client,
// pyspf through dnspython pointed at the server.
func TestPySPF(t *testing.T) {
	addr := dnstest.Serve(t, dnstest.Zone{
		Records: []string{
			`example.com. 60 IN TXT "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8:1::/48 -all"`,
			`soft.example.com. 60 IN TXT "v=spf1 ip4:192.0.2.1 ~all"`,
			`neutral.example.com. 60 IN TXT "v=spf1 ?all"`,
			`inc.example.com. 60 IN TXT "v=spf1 include:_spf.example.net -all"`,
			`_spf.example.net. 60 IN TXT "v=spf1 ip4:198.51.100.0/24 ~all"`,
			`mx.example.com. 60 IN TXT "v=spf1 mx/30 -all"`,
			`mx.example.com. 60 IN MX 10 mail.example.com.`,
			`mail.example.com. 60 IN A 203.0.113.9`,
			`mail.example.com. 60 IN TXT "v=spf1 a -all"`,
			`redir.example.com. 60 IN TXT "v=spf1 redirect=example.com"`,
			`bad.example.com. 60 IN TXT "v=spf1 ip4:192.0.2.0/33 -all"`,
			`unknown.example.com. 60 IN TXT "v=spf1 foo:bar -all"`,
			`two.example.com. 60 IN TXT "v=spf1 -all"`,
			`two.example.com. 60 IN TXT "v=spf1 +all"`,
			`void.example.com. 60 IN TXT "v=spf1 a:n1.example.com a:n2.example.com a:n3.example.com ?all"`,
			`exists.example.com. 60 IN TXT "v=spf1 exists:%{ir}.list.example.com -all"`,
			`10.2.0.192.list.example.com. 60 IN A 127.0.0.2`,
			`ptr.example.com. 60 IN TXT "v=spf1 ptr -all"`,
			`44.2.0.192.in-addr.arpa. 60 IN PTR host.ptr.example.com.`,
			`host.ptr.example.com. 60 IN A 192.0.2.44`,
			`temp.example.com. 60 IN TXT "v=spf1 include:broken.example.com -all"`,
			`macro.example.com. 60 IN TXT "v=spf1 exists:%{l1r-}.%{d2}.users.example.org -all"`,
			`bob.example.com.users.example.org. 60 IN A 127.0.0.2`,
			`alias.example.com. 60 IN CNAME example.com.`,
			`limit.example.com. 60 IN TXT "v=spf1 a a a a a a a a a a a -all"`,
			`limit.example.com. 60 IN A 203.0.113.1`,
		},
		ServFail: []string{"broken.example.com", "servfail.example.com"},
	})
	cases := []struct{ IP, From, Helo string }{
		{"192.0.2.10", "a@example.com", "h.example.com"},
		{"198.51.100.1", "a@example.com", "h.example.com"},
		{"2001:db8:1::25", "a@example.com", "h.example.com"},
		{"2001:db8:2::25", "a@example.com", "h.example.com"},
		{"198.51.100.1", "a@soft.example.com", "h.example.com"},
		{"198.51.100.1", "a@neutral.example.com", "h.example.com"},
		{"198.51.100.1", "a@nowhere.example.com", "h.example.com"},
		{"198.51.100.20", "a@inc.example.com", "h.example.com"},
		{"203.0.113.10", "a@inc.example.com", "h.example.com"},
		{"203.0.113.10", "a@mx.example.com", "h.example.com"},
		{"203.0.113.20", "a@mx.example.com", "h.example.com"},
		{"203.0.113.9", "", "mail.example.com"},
		{"203.0.113.8", "", "mail.example.com"},
		{"192.0.2.10", "a@redir.example.com", "h.example.com"},
		{"192.0.2.10", "a@bad.example.com", "h.example.com"},
		{"192.0.2.10", "a@unknown.example.com", "h.example.com"},
		{"192.0.2.10", "a@two.example.com", "h.example.com"},
		{"192.0.2.10", "a@void.example.com", "h.example.com"},
		{"192.0.2.10", "a@exists.example.com", "h.example.com"},
		{"192.0.2.11", "a@exists.example.com", "h.example.com"},
		{"192.0.2.44", "a@ptr.example.com", "h.example.com"},
		{"192.0.2.45", "a@ptr.example.com", "h.example.com"},
		{"192.0.2.10", "a@temp.example.com", "h.example.com"},
		{"192.0.2.10", "a@servfail.example.com", "h.example.com"},
		{"192.0.2.10", "bob-smith@macro.example.com", "h.example.com"},
		{"192.0.2.10", "smith-bob@macro.example.com", "h.example.com"},
		{"192.0.2.10", "a@alias.example.com", "h.example.com"},
		{"192.0.2.10", "a@limit.example.com", "h.example.com"},
		{"::ffff:192.0.2.10", "a@example.com", "h.example.com"},
	}
	_, port, _ := strings.Cut(addr, ":")
	in, _ := json.Marshal(cases)
	script := testlib.PyResolver(port) + `
import spf
out = []
for c in json.load(sys.stdin):
    res, exp = spf.check2(i=c["IP"], s=c["From"], h=c["Helo"], querytime=5)
    out.append(res)
print(json.dumps(out))
`
	outb := []byte(testlib.Python(t, []string{"spf", "dns"}, "python3-spf and python3-dnspython", script, json.RawMessage(in)))
	var theirs []string
	if err := json.Unmarshal(outb, &theirs); err != nil || len(theirs) != len(cases) {
		t.Fatalf("pyspf said %q: %v", outb, err)
	}
	t.Logf("pyspf: %v", theirs)
	client := &dns.Client{Server: addr, Timeout: 2 * time.Second}
	for i, c := range cases {
		res := Check(context.Background(), client, netip.MustParseAddr(c.IP), c.Helo, c.From)
		if string(res.Result) != theirs[i] {
			t.Errorf("%s from %q helo %s: ours %s (%v), pyspf %s", c.IP, c.From, c.Helo, res.Result, res.Err, theirs[i])
		}
	}
}

// FuzzRecord parses a fuzzed record and evaluates it through a dns.Mem
// that serves it: no panic, a result of §2.6, errors only with the error
// results, and a record the parser takes evaluates to none only never.
func FuzzRecord(f *testing.F) {
	for _, s := range []string{
		"v=spf1 -all",
		"v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 ~all",
		"v=spf1 a mx/24//64 ptr:example.org exists:%{ir}.%{l1r+-}.%{d2}.bl.example.org include:inc.example.org ?all",
		"v=spf1 redirect=%{d}.r.example.org exp=exp.example.org",
		"v=spf1 a:%{H}.bar foo=%{o} -all",
		"v=spf1 mx:foo:bar/baz.example.com -all",
		"v=spf1 include:loop.example.org",
		"v=spf1 ip4:1.2.3.4/032 -all",
		"v=spf1 \x80a:example.net -all",
		"v=spf1 a:macro%%percent%_%_space%-url-space.example.com -all",
		"v=spf1 %{",
		"V=SPF1 +ALL",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, txt string) {
		rec, perr := parseRecord(txt)
		r := &dns.Mem{
			TXTs: map[string][]string{
				"example.org":      {txt},
				"inc.example.org":  {"v=spf1 ip4:192.0.2.0/24 -all"},
				"loop.example.org": {"v=spf1 include:loop.example.org"},
				"exp.example.org":  {"%{l} at %{c}: %{d} says no, %{r} %{t}"},
			},
			Addrs: map[string][]netip.Addr{"example.org": {netip.MustParseAddr("192.0.2.1")}},
			MXs:   map[string][]dns.MX{"example.org": {{Host: "example.org", Pref: 1}}},
			Fail:  map[string]error{"broken.example.org": errors.New("SERVFAIL")},
		}
		for _, ip := range []string{"192.0.2.1", "2001:db8::1"} {
			res := Check(context.Background(), r, netip.MustParseAddr(ip), "mail.example.net", "user@example.org")
			switch res.Result {
			case Pass, Fail, SoftFail, Neutral:
			case None:
				if isSPF(txt) && perr == nil {
					t.Fatalf("%q parses (%+v) but gives none", txt, rec)
				}
			case TempError, PermError:
				if res.Err == nil {
					t.Fatalf("%q: %s without a reason", txt, res.Result)
				}
			default:
				t.Fatalf("%q: result %q", txt, res.Result)
			}
			if isSPF(txt) && perr != nil && res.Result != PermError {
				t.Fatalf("%q: parse error %v but %s", txt, perr, res.Result)
			}
			if res.Result != Fail && res.Explanation != "" {
				t.Fatalf("%q: explanation for %s", txt, res.Result)
			}
		}
	})
}
