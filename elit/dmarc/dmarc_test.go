package dmarc

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"elit.local/elit/authres"
	"elit.local/elit/dns"
	"elit.local/elit/dns/dnstest"
	"elit.local/elit/internal/testlib"
	"elit.local/elit/spf"
)

// zone is the DNS data of the verdict table, served to our code and to
// authheaders alike.
var zone = dnstest.Zone{
	Records: []string{
		`_dmarc.example.com. 60 IN TXT "v=DMARC1; p=reject; sp=quarantine"`,
		`_dmarc.example.com. 60 IN TXT "google-site-verification=not-dmarc"`,
		`_dmarc.own.example.com. 60 IN TXT "v=DMARC1; p=none"`,
		`_dmarc.strict.example.net. 60 IN TXT "v=DMARC1; p=quarantine; adkim=s; aspf=s"`,
		`_dmarc.none.example.org. 60 IN TXT "v=DMARC1; p=none; rua=mailto:dmarc@none.example.org"`,
		`_dmarc.pct.example.net. 60 IN TXT "v=DMARC1; p=reject; pct=50"`,
		`_dmarc.pctq.example.net. 60 IN TXT "v=DMARC1; p=quarantine; pct=10"`,
		`_dmarc.example.co.uk. 60 IN TXT "v=DMARC1; p=Reject; SP=none"`,
		`_dmarc.multi.example. 60 IN TXT "v=DMARC1; p=reject"`,
		`_dmarc.multi.example. 60 IN TXT "v=DMARC1; p=none"`,
		`_dmarc.bad.example. 60 IN TXT "v=DMARC1; p=reject; pct=abc"`,
		`_dmarc.ruaonly.example. 60 IN TXT "v=DMARC1; rua=mailto:d@ruaonly.example"`,
		`_dmarc.nopolicy.example. 60 IN TXT "v=DMARC1; adkim=s"`,
		`nodmarc.example.org. 60 IN A 192.0.2.1`,
	},
	ServFail: []string{"_dmarc.temp.example", "_dmarc.tempsub.example.com"},
}

// verdicts is the table: From domain × SPF result and domain × DKIM d=
// and result × the record's p/sp/adkim/aspf/pct. authheaders says
// what Debian's python3-authheaders says on the same inputs.
var verdicts = []struct {
	name        string
	from        string
	spf         spf.Verdict
	spfDomain   string
	dkim        []DKIM
	rand        int // what the random source gives for pct=
	want        Verdict
	policy      Policy // to apply
	requested   Policy
	spfAligned  bool
	dkimAligned bool
	// authheaders: "same" when Debian's python3-authheaders gives the
	// same result and policy; "sp" when it gives the same result but,
	// for a record at the From domain itself, sp= as its policy (it
	// applies sp= to every record, RFC 7489 §6.3 to subdomains only);
	// "no" when it cannot be asked (see TestAuthheaders).
	authheaders string
}{
	{"spf aligned", "example.com", spf.Pass, "example.com", nil, 0, Pass, PolicyNone, Reject, true, false, "sp"},
	{"spf relaxed", "example.com", spf.Pass, "bounces.example.com", nil, 0, Pass, PolicyNone, Reject, true, false, "sp"},
	{"from in upper case", "EXAMPLE.COM", spf.Pass, "example.com", nil, 0, Pass, PolicyNone, Reject, true, false, "sp"},
	{"dkim aligned", "example.com", spf.Pass, "other.example.net", []DKIM{{"example.com", "pass"}}, 0, Pass, PolicyNone, Reject, false, true, "sp"},
	{"dkim relaxed", "example.com", spf.Fail, "example.com", []DKIM{{"mail.example.com", "pass"}}, 0, Pass, PolicyNone, Reject, false, true, "sp"},
	{"both fail", "example.com", spf.Fail, "example.com", []DKIM{{"example.com", "fail"}}, 0, Fail, Reject, Reject, false, false, "sp"},
	{"softfail", "example.com", spf.SoftFail, "example.com", nil, 0, Fail, Reject, Reject, false, false, "sp"},
	{"spf neutral", "example.com", spf.Neutral, "example.com", nil, 0, Fail, Reject, Reject, false, false, "sp"},
	{"spf none", "example.com", spf.None, "example.com", nil, 0, Fail, Reject, Reject, false, false, "sp"},
	{"unaligned passes", "example.com", spf.Pass, "other.example.net", []DKIM{{"other.example.net", "pass"}}, 0, Fail, Reject, Reject, false, false, "sp"},
	{"look-alike domain", "example.com", spf.Pass, "example.com.evil.example", []DKIM{{"notexample.com", "pass"}}, 0, Fail, Reject, Reject, false, false, "sp"},
	{"subdomain: sp", "sub.example.com", spf.Fail, "sub.example.com", nil, 0, Fail, Quarantine, Quarantine, false, false, "same"},
	{"subdomain: org dkim", "sub.example.com", spf.Fail, "sub.example.com", []DKIM{{"example.com", "pass"}}, 0, Pass, PolicyNone, Quarantine, false, true, "same"},
	{"subdomain with its own record: p", "own.example.com", spf.Fail, "own.example.com", nil, 0, Fail, PolicyNone, PolicyNone, false, false, "same"},
	{"strict spf", "strict.example.net", spf.Pass, "mail.strict.example.net", nil, 0, Fail, Quarantine, Quarantine, false, false, "same"},
	{"strict spf exact", "strict.example.net", spf.Pass, "strict.example.net", nil, 0, Pass, PolicyNone, Quarantine, true, false, "same"},
	{"strict dkim", "strict.example.net", spf.Fail, "x.example", []DKIM{{"strict.example.net", "pass"}}, 0, Pass, PolicyNone, Quarantine, false, true, "same"},
	{"strict dkim subdomain", "strict.example.net", spf.Fail, "x.example", []DKIM{{"sub.strict.example.net", "pass"}}, 0, Fail, Quarantine, Quarantine, false, false, "same"},
	{"p=none", "none.example.org", spf.Fail, "none.example.org", nil, 0, Fail, PolicyNone, PolicyNone, false, false, "same"},
	{"no record", "nodmarc.example.org", spf.Fail, "nodmarc.example.org", nil, 0, None, PolicyNone, "", false, false, "same"},
	{"no such domain", "nowhere.example.org", spf.Pass, "nowhere.example.org", nil, 0, None, PolicyNone, "", false, false, "same"},
	{"co.uk: relaxed", "mail.example.co.uk", spf.Pass, "example.co.uk", nil, 0, Pass, PolicyNone, PolicyNone, true, false, "same"},
	{"co.uk: other registrant", "mail.example.co.uk", spf.Pass, "other.co.uk", nil, 0, Fail, PolicyNone, PolicyNone, false, false, "same"},
	{"co.uk: org, p", "example.co.uk", spf.Fail, "example.co.uk", nil, 0, Fail, Reject, Reject, false, false, "sp"},
	// pct=: authheaders has no pct, so only Requested is compared.
	{"pct sampled", "pct.example.net", spf.Fail, "pct.example.net", nil, 49, Fail, Reject, Reject, false, false, "same"},
	{"pct not sampled: quarantine", "pct.example.net", spf.Fail, "pct.example.net", nil, 50, Fail, Quarantine, Reject, false, false, "same"},
	{"pct not sampled: none", "pctq.example.net", spf.Fail, "pctq.example.net", nil, 10, Fail, PolicyNone, Quarantine, false, false, "same"},
	{"pct pass", "pct.example.net", spf.Pass, "pct.example.net", nil, 99, Pass, PolicyNone, Reject, true, false, "same"},
	// What authheaders cannot be asked, or answers otherwise (see
	// TestAuthheaders).
	{"null sender: helo aligned", "example.com", spf.Pass, "mx.example.com", nil, 0, Pass, PolicyNone, Reject, true, false, "no"},
	{"two signatures, second aligned", "example.com", spf.Fail, "example.com", []DKIM{{"esp.example.net", "pass"}, {"example.com", "pass"}}, 0, Pass, PolicyNone, Reject, false, true, "no"},
	{"aligned spf temperror", "example.com", spf.TempError, "example.com", nil, 0, TempError, PolicyNone, Reject, false, false, "no"},
	{"aligned dkim temperror", "example.com", spf.Fail, "example.com", []DKIM{{"example.com", "temperror"}}, 0, TempError, PolicyNone, Reject, false, false, "no"},
	{"unaligned temperror", "example.com", spf.TempError, "other.example.net", nil, 0, Fail, Reject, Reject, false, false, "no"},
	{"dns failure", "temp.example", spf.Pass, "temp.example", nil, 0, TempError, PolicyNone, "", false, false, "no"},
	{"dns failure at the subdomain", "tempsub.example.com", spf.Pass, "tempsub.example.com", nil, 0, TempError, PolicyNone, "", false, false, "no"},
	{"two records", "multi.example", spf.Fail, "multi.example", nil, 0, PermError, PolicyNone, "", false, false, "no"},
	{"syntax error", "bad.example", spf.Fail, "bad.example", nil, 0, PermError, PolicyNone, "", false, false, "no"},
	{"rua only: p=none", "ruaonly.example", spf.Fail, "ruaonly.example", nil, 0, Fail, PolicyNone, PolicyNone, false, false, "no"},
	{"no p, no rua", "nopolicy.example", spf.Fail, "nopolicy.example", nil, 0, PermError, PolicyNone, "", false, false, "no"},
}

func TestEvaluate(t *testing.T) {
	addr := dnstest.Serve(t, zone)
	r := &dns.Client{Server: addr, Timeout: time.Second}
	for _, tc := range verdicts {
		t.Run(tc.name, func(t *testing.T) {
			res := Evaluate(context.Background(), r, Input{From: tc.from, SPF: tc.spf, SPFDomain: tc.spfDomain, DKIM: tc.dkim,
				Rand: func(n int) int { return tc.rand % n }})
			if res.Result != tc.want || res.Policy != tc.policy || res.Requested != tc.requested ||
				res.AlignedSPF != tc.spfAligned || res.AlignedDKIM != tc.dkimAligned {
				t.Errorf("got %s policy %s requested %s aligned spf %v dkim %v (%v), want %s %s %s %v %v",
					res.Result, res.Policy, res.Requested, res.AlignedSPF, res.AlignedDKIM, res.Err,
					tc.want, tc.policy, tc.requested, tc.spfAligned, tc.dkimAligned)
			}
			if (res.Result == TempError) != errors.Is(res.Err, dns.ErrTemporary) && res.Found.Record == nil {
				t.Errorf("temperror %v", res.Err)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	r := &dns.Mem{
		TXTs: map[string][]string{
			"_dmarc.example.com":           {"v=DMARC1; p=reject"},
			"_dmarc.sub.example.com":       {"not dmarc"},
			"_dmarc.xn--bcher-kva.example": {"v=DMARC1; p=quarantine"},
		},
		Fail: map[string]error{"_dmarc.broken.example.com": errors.New("SERVFAIL")},
	}
	ctx := context.Background()
	for _, tc := range []struct {
		from, domain, org, at string
		temporary             bool
	}{
		{"example.com", "example.com", "example.com", "example.com", false},
		{"a.b.Example.COM.", "a.b.example.com", "example.com", "example.com", false},
		{"sub.example.com", "sub.example.com", "example.com", "example.com", false}, // a TXT that is no DMARC record
		{"bücher.example", "xn--bcher-kva.example", "xn--bcher-kva.example", "xn--bcher-kva.example", false},
		{"example.net", "example.net", "example.net", "", false},
		{"broken.example.com", "broken.example.com", "example.com", "", true},
		{"", "", "", "", false},
		{"com", "com", "com", "", false},
	} {
		f, err := Lookup(ctx, r, tc.from)
		if f.Domain != tc.domain || f.Org != tc.org || f.RecordDomain != tc.at || errors.Is(err, dns.ErrTemporary) != tc.temporary ||
			(err != nil) != tc.temporary || (f.Record != nil) != (tc.at != "") {
			t.Errorf("Lookup(%q) = %+v, %v", tc.from, f, err)
		}
	}
}

// TestAuthheaders asks Debian's python3-authheaders for its DMARC
// verdict on the cases of the table it can be asked, with the SPF and
// DKIM results given in a previous Authentication-Results field and the
// same DNS data (dnspython pointed at our server): its result and its
// policy.dmarc (p= or sp=, before pct=, which it does not implement)
// agree with ours, but that it applies sp= to a record found at the From
// domain itself (a bug: sp= is for subdomains, RFC 7489 §6.3), so there
// only the result is the same. What it cannot be asked: a null sender (it takes the
// SPF domain from an address), several DKIM signatures (it uses the
// first), temperror (a DNS failure is an exception in authheaders, an
// aligned temperror a fail), and records we refuse (several records,
// where it falls back to the organizational domain; a syntax error or a
// missing p=, which it reads as best it can).
func TestAuthheaders(t *testing.T) {
	addr := dnstest.Serve(t, zone)
	_, port, _ := strings.Cut(addr, ":")
	type pycase struct {
		From, SPF, MailFrom string
		DKIM                []DKIM
	}
	var cases []pycase
	var idx []int
	for i, tc := range verdicts {
		if tc.authheaders == "no" {
			continue
		}
		cases = append(cases, pycase{tc.from, string(tc.spf), "bounce@" + tc.spfDomain, tc.dkim})
		idx = append(idx, i)
	}
	script := testlib.PyResolver(port) + `
import authheaders
out = []
for c in json.load(sys.stdin):
    prev = "Authentication-Results: mx.elit.test; spf=%s smtp.mailfrom=%s" % (c["SPF"], c["MailFrom"])
    for d in c["DKIM"] or []:
        prev += "; dkim=%s header.d=%s" % (d["Result"], d["Domain"])
    msg = ("From: someone@%s\r\nTo: x@example.org\r\nSubject: t\r\n\r\nbody\r\n" % c["From"]).encode()
    out.append(authheaders.authenticate_message(msg, "mx.elit.test", prev=prev, spf=False, dkim=False, dmarc=True))
print(json.dumps(out))
`
	outb := []byte(testlib.Python(t, []string{"authheaders", "dns"}, "python3-authheaders and python3-dnspython", script, cases))
	var fields []string
	if err := json.Unmarshal(outb, &fields); err != nil || len(fields) != len(cases) {
		t.Fatalf("authheaders said %s: %v", outb, err)
	}
	r := &dns.Client{Server: addr, Timeout: time.Second}
	agree := 0
	for k, field := range fields {
		tc := verdicts[idx[k]]
		_, value, _ := strings.Cut(field, ":")
		h, err := authres.Parse(value)
		if err != nil {
			t.Errorf("%s: authheaders wrote %q: %v", tc.name, field, err)
			continue
		}
		var theirs authres.Result
		for _, res := range h.Results {
			if res.Method == "dmarc" {
				theirs = res
			}
		}
		ours := Evaluate(context.Background(), r, Input{From: tc.from, SPF: tc.spf, SPFDomain: tc.spfDomain, DKIM: tc.dkim,
			Rand: func(n int) int { return tc.rand % n }})
		want := string(ours.Requested)
		if tc.authheaders == "sp" {
			want = string(ours.Record.SubdomainPolicy)
		}
		if theirs.Result != string(ours.Result) || theirs.Value("policy", "dmarc") != want {
			t.Errorf("%s: authheaders %s policy %q, ours %s requested %q (%v)\n%s", tc.name, theirs.Result,
				theirs.Value("policy", "dmarc"), ours.Result, ours.Requested, ours.Err, field)
			continue
		}
		if tc.authheaders == "same" {
			agree++
		}
	}
	t.Logf("authheaders: same result and policy in %d cases, same result and its sp= policy in %d, %d of the table not asked",
		agree, len(cases)-agree, len(verdicts)-len(cases))
}
