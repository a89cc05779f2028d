package dane

import (
	"crypto/x509"
	"errors"
	"fmt"
	"testing"
	"time"

	"elit.local/elit/dns"
)

// TestVerifyCombinations: every usage, selector and matching type, with
// a record of the server's certificate, of the intermediate, of the
// root or of another certificate, against the chain with and without
// the root. DANE-EE matches only the server's certificate; DANE-TA any
// certificate of the chain, or a root the server does not send when the
// record holds it whole; PKIX usages are never usable for SMTP.
func TestVerifyCombinations(t *testing.T) {
	p := newPKI(t)
	targets := map[string]*x509.Certificate{"leaf": p.leaf, "intermediate": p.inter, "root": p.root, "other": p.other}
	names := []string{"mx.example.com"}
	for _, usage := range []uint8{UsagePKIXTA, UsagePKIXEE, UsageDANETA, UsageDANEEE} {
		for _, selector := range []uint8{SelectorCert, SelectorSPKI} {
			for _, mt := range []uint8{MatchFull, MatchSHA256, MatchSHA512} {
				for target, cert := range targets {
					for _, withRoot := range []bool{false, true} {
						chain := []*x509.Certificate{p.leaf, p.inter}
						if withRoot {
							chain = append(chain, p.root)
						}
						r := Record(cert, usage, selector, mt)
						want := false
						switch usage {
						case UsageDANEEE:
							want = target == "leaf"
						case UsageDANETA:
							want = target == "leaf" || target == "intermediate" ||
								target == "root" && (withRoot || selector == SelectorCert && mt == MatchFull)
						}
						name := fmt.Sprintf("%d %d %d %s root-sent=%v", usage, selector, mt, target, withRoot)
						err := Verify([]dns.TLSA{r}, chain, names, testNow)
						if (err == nil) != want {
							t.Errorf("%s: %v, want match %v", name, err, want)
						}
						switch {
						case usage < UsageDANETA && !errors.Is(err, ErrUnusable):
							t.Errorf("%s: %v, want ErrUnusable", name, err)
						case usage >= UsageDANETA && !want && !errors.Is(err, ErrNoMatch):
							t.Errorf("%s: %v, want ErrNoMatch", name, err)
						}
					}
				}
			}
		}
	}
}

// TestVerifyNamesAndDates: DANE-EE ignores the certificate's names and
// dates (RFC 7672 §3.1.1); DANE-TA checks both (§3.1.2), against any of
// the reference names, wildcards in the leftmost label only (§3.2.3).
func TestVerifyNamesAndDates(t *testing.T) {
	// A root and leaves with their names and dates.
	root, rootKey := newCert(t, caTemplate("Root"), nil, nil)
	mkLeaf := func(notBefore, notAfter time.Time, names ...string) *x509.Certificate {
		tmpl := leafTemplate(names...)
		tmpl.NotBefore, tmpl.NotAfter = notBefore, notAfter
		c, _ := newCert(t, tmpl, root, rootKey)
		return c
	}
	valid := mkLeaf(testNow.Add(-time.Hour), testNow.Add(time.Hour), "mx.example.com")
	expired := mkLeaf(testNow.Add(-48*time.Hour), testNow.Add(-24*time.Hour), "mx.example.com")
	future := mkLeaf(testNow.Add(time.Hour), testNow.Add(48*time.Hour), "mx.example.com")
	wrongName := mkLeaf(testNow.Add(-time.Hour), testNow.Add(time.Hour), "mail.example.net")
	wildcard := mkLeaf(testNow.Add(-time.Hour), testNow.Add(time.Hour), "*.example.com")
	ta := Record(root, UsageDANETA, SelectorSPKI, MatchSHA256)
	for _, tc := range []struct {
		name    string
		leaf    *x509.Certificate
		usage   uint8
		names   []string
		ok      bool
		checkFn func(error) bool
	}{
		{"EE valid", valid, UsageDANEEE, []string{"mx.example.com"}, true, nil},
		{"EE expired", expired, UsageDANEEE, []string{"mx.example.com"}, true, nil},
		{"EE not yet valid", future, UsageDANEEE, []string{"mx.example.com"}, true, nil},
		{"EE another name", wrongName, UsageDANEEE, []string{"mx.example.com"}, true, nil},
		{"TA valid", valid, UsageDANETA, []string{"mx.example.com"}, true, nil},
		{"TA second reference name", valid, UsageDANETA, []string{"mx.cname.example", "mx.example.com"}, true, nil},
		{"TA expired", expired, UsageDANETA, []string{"mx.example.com"}, false, func(err error) bool {
			var inv x509.CertificateInvalidError
			return errors.As(err, &inv) && inv.Reason == x509.Expired
		}},
		{"TA not yet valid", future, UsageDANETA, []string{"mx.example.com"}, false, nil},
		{"TA another name", wrongName, UsageDANETA, []string{"mx.example.com"}, false, func(err error) bool {
			var host x509.HostnameError
			return errors.As(err, &host)
		}},
		{"TA wildcard", wildcard, UsageDANETA, []string{"mx.example.com"}, true, nil},
		{"TA wildcard, two labels", wildcard, UsageDANETA, []string{"a.mx.example.com"}, false, nil},
		{"TA no names", valid, UsageDANETA, nil, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ta
			if tc.usage == UsageDANEEE {
				r = Record(tc.leaf, UsageDANEEE, SelectorSPKI, MatchSHA256)
			}
			err := Verify([]dns.TLSA{r}, []*x509.Certificate{tc.leaf, root}, tc.names, testNow)
			if (err == nil) != tc.ok {
				t.Fatalf("Verify: %v, want ok %v", err, tc.ok)
			}
			if tc.checkFn != nil && !tc.checkFn(err) {
				t.Errorf("Verify: %v: not the expected kind of error", err)
			}
		})
	}
}

// TestVerifyRRset: one matching record among others passes; unusable
// records are skipped; no certificate fails.
func TestVerifyRRset(t *testing.T) {
	p := newPKI(t)
	chain := []*x509.Certificate{p.leaf, p.inter}
	names := []string{"mx.example.com"}
	good := Record(p.leaf, UsageDANEEE, SelectorSPKI, MatchSHA256)
	bad := Record(p.other, UsageDANEEE, SelectorSPKI, MatchSHA256)
	pkix := Record(p.leaf, UsagePKIXEE, SelectorSPKI, MatchSHA256)
	short := dns.TLSA{Usage: 3, Selector: 1, MatchingType: 1, Data: good.Data[:31]}
	for _, tc := range []struct {
		name string
		rs   []dns.TLSA
		err  error
	}{
		{"good among bad", []dns.TLSA{bad, pkix, good}, nil},
		{"only bad", []dns.TLSA{bad, short}, ErrNoMatch},
		{"only unusable", []dns.TLSA{pkix, short, {Usage: 3, Selector: 2, MatchingType: 1, Data: good.Data}}, ErrUnusable},
		{"none", nil, ErrUnusable},
	} {
		err := Verify(tc.rs, chain, names, testNow)
		if (tc.err == nil) != (err == nil) || (tc.err != nil && !errors.Is(err, tc.err)) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
		}
	}
	if err := Verify([]dns.TLSA{good}, nil, names, testNow); err == nil {
		t.Error("no certificate: no error")
	}
}
