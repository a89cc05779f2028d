package spf

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"elit.local/elit/dns"
)

// suitePath is the OpenSPF RFC 7208 test suite (pyspf's copy; NOTES.md
// beside it says how to drive it).
const suitePath = "../../../shared/oracles/spf/rfc7208-tests.yml"

// scenario is one document of the suite.
type scenario struct {
	Description string
	Tests       map[string]suiteCase
	Zonedata    map[string][]yaml.Node
}

type suiteCase struct {
	Helo        string
	Host        string
	Mailfrom    string
	Result      yaml.Node // a result or a list of acceptable ones
	Explanation *string
}

// TestSuite runs every case of the RFC 7208 test suite as
// t.Run(scenario/name), each scenario's zone data in a dns.Mem.
func TestSuite(t *testing.T) {
	f, err := os.Open(suitePath)
	if err != nil {
		t.Fatalf("the RFC 7208 test suite: %v", err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	var n, passed int
	for {
		var s scenario
		if err := dec.Decode(&s); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if s.Description == "" {
			continue
		}
		zone := suiteZone(t, s.Zonedata)
		names := make([]string, 0, len(s.Tests))
		for name := range s.Tests {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			tc := s.Tests[name]
			n++
			ok := t.Run(s.Description+"/"+name, func(t *testing.T) {
				var want []string
				if tc.Result.Kind == yaml.SequenceNode {
					tc.Result.Decode(&want)
				} else {
					want = []string{tc.Result.Value}
				}
				ip, err := netip.ParseAddr(tc.Host)
				if err != nil {
					t.Fatal(err)
				}
				res := Check(context.Background(), zone, ip, latin1(tc.Helo), latin1(tc.Mailfrom))
				if !slices.Contains(want, string(res.Result)) {
					t.Errorf("%s: got %s (%v), want %v", tc.Mailfrom, res.Result, res.Err, want)
				}
				if tc.Explanation != nil {
					// DEFAULT: the domain gives none, ours would apply.
					want := *tc.Explanation
					if want == "DEFAULT" {
						want = ""
					}
					if res.Explanation != want {
						t.Errorf("explanation %q, want %q", res.Explanation, want)
					}
				}
			})
			if ok {
				passed++
			}
		}
	}
	t.Logf("RFC 7208 suite: %d of %d cases pass", passed, n)
	if n != 203 {
		t.Errorf("read %d cases, the suite has 203", n)
	}
}

// latin1 turns the suite's text back into the bytes it stands for: the
// file is read as latin-1 (NOTES.md), so "\xEF" is the byte 0xEF.
func latin1(s string) string {
	if !utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if r < 256 {
			b.WriteByte(byte(r))
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// suiteZone builds a resolver from a scenario's zonedata, as the suite's
// header and NOTES.md say: SPF records are served as TXT at a name that
// has no TXT record ("TXT: NONE" counts as one, serving nothing);
// TIMEOUT makes every type the name has no records of time out (pyspf's
// driver: records listed before TIMEOUT are served).
func suiteZone(t *testing.T, data map[string][]yaml.Node) *dns.Mem {
	m := &dns.Mem{
		MXs: map[string][]dns.MX{}, Addrs: map[string][]netip.Addr{}, TXTs: map[string][]string{},
		PTRs: map[string][]string{}, CNAMEs: map[string]string{}, Fail: map[string]error{},
	}
	for owner, records := range data {
		name := strings.TrimSuffix(strings.ToLower(latin1(owner)), ".")
		var spf []string
		hasTXT, timeout := false, false
		has := map[string]bool{}
		for _, r := range records {
			if r.Kind == yaml.ScalarNode && r.Value == "TIMEOUT" {
				timeout = true
				continue
			}
			var rr map[string]yaml.Node
			if err := r.Decode(&rr); err != nil {
				t.Fatalf("%s: %v", owner, err)
			}
			for typ, v := range rr {
				has[typ] = true
				switch typ {
				case "TXT", "SPF":
					text := txtValue(t, v)
					if typ == "SPF" {
						spf = append(spf, text)
						continue
					}
					hasTXT = true
					if text != "NONE" {
						m.TXTs[name] = append(m.TXTs[name], text)
					} else {
						has[typ] = false
					}
				case "A", "AAAA":
					m.Addrs[name] = append(m.Addrs[name], netip.MustParseAddr(v.Value))
				case "MX":
					var mx []yaml.Node
					v.Decode(&mx)
					var pref uint16
					mx[0].Decode(&pref)
					m.MXs[name] = append(m.MXs[name], dns.MX{Host: strings.TrimSuffix(strings.ToLower(mx[1].Value), "."), Pref: pref})
				case "PTR":
					m.PTRs[name] = append(m.PTRs[name], v.Value)
				case "CNAME":
					m.CNAMEs[name] = strings.TrimSuffix(strings.ToLower(v.Value), ".")
				default:
					t.Fatalf("%s: record type %s", owner, typ)
				}
			}
		}
		if !hasTXT && !timeout {
			m.TXTs[name] = append(m.TXTs[name], spf...)
		}
		if timeout {
			for _, typ := range []string{"A", "AAAA", "MX", "TXT", "PTR"} {
				if !has[typ] {
					m.Fail[name+" "+typ] = errors.New("DNS timeout")
				}
			}
		}
	}
	return m
}

// txtValue reads a TXT or SPF record: one string, or several joined
// with nothing between them (RFC 7208 §3.3; none makes "").
func txtValue(t *testing.T, v yaml.Node) string {
	if v.Kind == yaml.SequenceNode {
		var parts []string
		if err := v.Decode(&parts); err != nil {
			t.Fatal(err)
		}
		return latin1(strings.Join(parts, ""))
	}
	return latin1(v.Value)
}
