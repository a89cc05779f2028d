package mtasts

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// oracleDir holds the shared MTA-STS cases (NOTES.md there says where
// each comes from).
const oracleDir = "../../../shared/oracles/mtasts"

func readOracle(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(oracleDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestOraclePolicies parses the policies of the shared oracles: the
// example of RFC 8461 §3.2 and the lab's policy, which mta-sts-query
// accepted as VALID.
func TestOraclePolicies(t *testing.T) {
	for _, tc := range []struct {
		file string
		want Policy
	}{
		{"rfc8461-section3.2-example-policy.txt", Policy{Mode: Enforce, MaxAge: 604800 * time.Second,
			MX: []string{"mail.example.com", "*.example.net", "backupmx.example.com"}}},
		{"lab-example.com-policy.txt", Policy{Mode: Enforce, MaxAge: 86400 * time.Second, MX: []string{"mx.example.com"}}},
	} {
		text := readOracle(t, tc.file)
		if !strings.Contains(text, "\r\n") {
			t.Errorf("%s: expected CRLF line ends in the oracle", tc.file)
		}
		p, err := ParsePolicy(text)
		if err != nil {
			t.Errorf("%s: %v", tc.file, err)
			continue
		}
		if !reflect.DeepEqual(*p, tc.want) {
			t.Errorf("%s: %+v, want %+v", tc.file, *p, tc.want)
		}
		// The same with LF line ends.
		if q, err := ParsePolicy(strings.ReplaceAll(text, "\r\n", "\n")); err != nil || !reflect.DeepEqual(q, p) {
			t.Errorf("%s with LF: %+v, %v", tc.file, q, err)
		}
		if got := Lines(text); len(got) != strings.Count(text, "\n") || strings.ContainsAny(strings.Join(got, ""), "\r\n") {
			t.Errorf("%s: Lines = %q", tc.file, got)
		}
	}
}

// TestOracleRecord parses the TXT record of RFC 8461 §3.1.
func TestOracleRecord(t *testing.T) {
	txt := strings.TrimRight(readOracle(t, "rfc8461-section3.1-example-txt.txt"), "\r\n")
	rec, err := ParseRecord(txt)
	if err != nil || rec.ID != "20160831085700Z" {
		t.Fatalf("ParseRecord(%q) = %+v, %v", txt, rec, err)
	}
	if !isSTS(txt) {
		t.Errorf("%q not taken as an MTA-STS record", txt)
	}
}

// TestParsePolicy: policies the grammar of §3.2 accepts, in its corners.
func TestParsePolicy(t *testing.T) {
	const day = 86400 * time.Second
	cases := []struct {
		name, text string
		want       Policy
	}{
		{"lf", "version: STSv1\nmode: testing\nmx: mx.example.com\nmax_age: 86400\n",
			Policy{Testing, day, []string{"mx.example.com"}}},
		{"mixed line ends, no final one", "version: STSv1\r\nmode: enforce\nmx: mx.example.com\r\nmax_age: 86400",
			Policy{Enforce, day, []string{"mx.example.com"}}},
		{"no space after the colon", "version:STSv1\nmode:enforce\nmx:mx.example.com\nmax_age:86400\n",
			Policy{Enforce, day, []string{"mx.example.com"}}},
		{"tabs and spaces around values", "version:\t STSv1 \nmode: enforce\t\nmx:  mx.example.com \t\nmax_age: 86400 \n",
			Policy{Enforce, day, []string{"mx.example.com"}}},
		{"unknown keys ignored", "version: STSv1\nmode: enforce\nrua: mailto:tls@example.com; x=y\nx-ext.1_a: 日本語 text\nmx: mx.example.com\nmax_age: 86400\n",
			Policy{Enforce, day, []string{"mx.example.com"}}},
		{"keys are case-sensitive: Mode is an extension", "version: STSv1\nMode: none\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n",
			Policy{Enforce, day, []string{"mx.example.com"}}},
		{"duplicate mode: the first counts", "version: STSv1\nmode: testing\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n",
			Policy{Testing, day, []string{"mx.example.com"}}},
		{"a duplicate's value does not matter", "version: STSv1\nmode: enforce\nmode: bogus\nmax_age: 86400\nmax_age: -1\nversion: STSv2\nmx: mx.example.com\n",
			Policy{Enforce, day, []string{"mx.example.com"}}},
		{"several mx, in order, lower case", "version: STSv1\nmode: enforce\nmx: MX1.Example.COM\nmx: *.Example.NET\nmx: mx1.example.com\nmax_age: 86400\n",
			Policy{Enforce, day, []string{"mx1.example.com", "*.example.net", "mx1.example.com"}}},
		{"mode none without mx", "version: STSv1\nmode: none\nmax_age: 86400\n", Policy{None, day, nil}},
		{"mode none with mx", "version: STSv1\nmode: none\nmx: mx.example.com\nmax_age: 86400\n", Policy{None, day, []string{"mx.example.com"}}},
		{"max_age 0", "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 0\n", Policy{Enforce, 0, []string{"mx.example.com"}}},
		{"max_age at the maximum", "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 31557600\n", Policy{Enforce, MaxMaxAge, []string{"mx.example.com"}}},
		{"max_age in 10 digits", "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 0000086400\n", Policy{Enforce, day, []string{"mx.example.com"}}},
		{"punycode mx", "version: STSv1\nmode: enforce\nmx: xn--bcher-kva.example\nmx: *.xn--bcher-kva.example\nmax_age: 86400\n",
			Policy{Enforce, day, []string{"xn--bcher-kva.example", "*.xn--bcher-kva.example"}}},
		{"one-label wildcard domain", "version: STSv1\nmode: enforce\nmx: *.com\nmax_age: 86400\n", Policy{Enforce, day, []string{"*.com"}}},
		{"63-octet label", "version: STSv1\nmode: enforce\nmx: " + strings.Repeat("a", 63) + ".example\nmax_age: 86400\n",
			Policy{Enforce, day, []string{strings.Repeat("a", 63) + ".example"}}},
		{"32-octet key", "version: STSv1\nmode: enforce\n" + strings.Repeat("k", 32) + ": v\nmx: mx.example.com\nmax_age: 86400\n",
			Policy{Enforce, day, []string{"mx.example.com"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParsePolicy(tc.text)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*p, tc.want) {
				t.Errorf("got %+v, want %+v", *p, tc.want)
			}
		})
	}
}

// TestParsePolicyBad: policies that must not be used, each for one
// reason.
func TestParsePolicyBad(t *testing.T) {
	const tail = "mode: enforce\nmx: mx.example.com\nmax_age: 86400\n"
	const head = "version: STSv1\nmode: enforce\n"
	cases := []struct{ name, text string }{
		{"empty", ""},
		{"only a line end", "\n"},
		{"version not first", "mode: enforce\nversion: STSv1\nmx: mx.example.com\nmax_age: 86400\n"},
		{"version not STSv1", "version: STSv2\n" + tail},
		{"version in lower case", "version: stsv1\n" + tail},
		{"Version capitalised", "Version: STSv1\n" + tail},
		{"space before the colon", "version : STSv1\n" + tail},
		{"no version line at all", tail},
		{"no mode", "version: STSv1\nmx: mx.example.com\nmax_age: 86400\n"},
		{"no max_age", head + "mx: mx.example.com\n"},
		{"enforce without mx", head + "max_age: 86400\n"},
		{"testing without mx", "version: STSv1\nmode: testing\nmax_age: 86400\n"},
		{"mode capitalised", "version: STSv1\nmode: Enforce\nmx: mx.example.com\nmax_age: 86400\n"},
		{"mode unknown", "version: STSv1\nmode: report\nmx: mx.example.com\nmax_age: 86400\n"},
		{"first mode bad, second good", "version: STSv1\nmode: bogus\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n"},
		{"max_age negative", head + "mx: mx.example.com\nmax_age: -1\n"},
		{"max_age over the maximum", head + "mx: mx.example.com\nmax_age: 31557601\n"},
		{"max_age of 11 digits", head + "mx: mx.example.com\nmax_age: 00000086400\n"},
		{"max_age with a unit", head + "mx: mx.example.com\nmax_age: 1d\n"},
		{"max_age with a sign", head + "mx: mx.example.com\nmax_age: +86400\n"},
		{"max_age with inner space", head + "mx: mx.example.com\nmax_age: 86 400\n"},
		{"max_age empty", head + "mx: mx.example.com\nmax_age:\n"},
		{"mx empty", head + "mx: \nmax_age: 86400\n"},
		{"mx a star", head + "mx: *\nmax_age: 86400\n"},
		{"mx a star and dot", head + "mx: *.\nmax_age: 86400\n"},
		{"mx two stars", head + "mx: *.*.example.com\nmax_age: 86400\n"},
		{"mx inner star", head + "mx: mx.*.example.com\nmax_age: 86400\n"},
		{"mx partial wildcard", head + "mx: mx*.example.com\nmax_age: 86400\n"},
		{"mx final dot", head + "mx: mx.example.com.\nmax_age: 86400\n"},
		{"mx empty label", head + "mx: mx..example.com\nmax_age: 86400\n"},
		{"mx leading hyphen", head + "mx: -mx.example.com\nmax_age: 86400\n"},
		{"mx trailing hyphen", head + "mx: mx-.example.com\nmax_age: 86400\n"},
		{"mx underscore", head + "mx: mx_1.example.com\nmax_age: 86400\n"},
		{"mx U-label", head + "mx: bücher.example\nmax_age: 86400\n"},
		{"mx two names", head + "mx: mx1.example.com mx2.example.com\nmax_age: 86400\n"},
		{"mx with a port", head + "mx: mx.example.com:25\nmax_age: 86400\n"},
		{"mx label of 64 octets", head + "mx: " + strings.Repeat("a", 64) + ".example\nmax_age: 86400\n"},
		{"mx over 253 octets", head + "mx: " + strings.Repeat(strings.Repeat("a", 60)+".", 5) + "example\nmax_age: 86400\n"},
		{"blank line inside", "version: STSv1\n\n" + tail},
		{"blank line at the end", "version: STSv1\n" + tail + "\n"},
		{"CRLF blank line at the end", "version: STSv1\r\n" + strings.ReplaceAll(tail, "\n", "\r\n") + "\r\n"},
		{"CR line ends", strings.ReplaceAll("version: STSv1\n"+tail, "\n", "\r")},
		{"CR at the very end", "version: STSv1\n" + strings.TrimSuffix(tail, "\n") + "\r"},
		{"a line without a colon", "version: STSv1\n" + tail + "comment\n"},
		{"a comment line", "version: STSv1\n# policy\n" + tail},
		{"key of 33 octets", "version: STSv1\n" + strings.Repeat("k", 33) + ": v\n" + tail},
		{"key starting with underscore", "version: STSv1\n_k: v\n" + tail},
		{"key with a space", "version: STSv1\nmy key: v\n" + tail},
		{"extension without a value", "version: STSv1\nx:\n" + tail},
		{"tab inside a value", "version: STSv1\nx: a\tb\n" + tail},
		{"NUL in a value", "version: STSv1\nx: a\x00b\n" + tail},
		{"DEL in a value", "version: STSv1\nx: a\x7fb\n" + tail},
		{"invalid UTF-8", "version: STSv1\nx: \xff\xfe\n" + tail},
		{"leading space before the key", " version: STSv1\n" + tail},
		{"JSON, as drafts had it", `{"version": "STSv1", "mode": "enforce", "mx": ["mx.example.com"], "max_age": 86400}`},
		{"HTML", "<html><body>version: STSv1</body></html>\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParsePolicy(tc.text)
			if err == nil {
				t.Fatalf("%q accepted: %+v", tc.text, *p)
			}
			if !errors.Is(err, errInvalid) || FailureType(err) != "sts-policy-invalid" {
				t.Errorf("error %v does not wrap errInvalid", err)
			}
		})
	}
}

// TestMatch: MX host validation (§4.1), "*." matching exactly one label.
func TestMatch(t *testing.T) {
	p := &Policy{Mode: Enforce, MX: []string{"mail.example.com", "*.example.net", "*.xn--bcher-kva.example"}}
	cases := []struct {
		host string
		want bool
	}{
		{"mail.example.com", true},
		{"MAIL.Example.Com", true},
		{"mail.example.com.", true},
		{"example.com", false},
		{"xmail.example.com", false},
		{"mail.example.com.evil.example", false},
		{"a.mail.example.com", false},
		{"mx1.example.net", true},
		{"MX1.EXAMPLE.NET.", true},
		{"example.net", false},
		{"a.mx1.example.net", false},
		{".example.net", false},
		{"*.example.net", false},
		{"mx1.example.network", false},
		{"mx1example.net", false},
		{"mx.xn--bcher-kva.example", true},
		{"mx.bücher.example", true},
		{"", false},
		{"[192.0.2.1]", false},
		{"192.0.2.1", false},
	}
	for _, tc := range cases {
		if got := p.Match(tc.host); got != tc.want {
			t.Errorf("Match(%q) = %v, want %v", tc.host, got, tc.want)
		}
	}
	if (&Policy{Mode: None}).Match("mail.example.com") {
		t.Error("a policy without mx matches")
	}
}

// TestDecide: what each mode asks of a listed and an unlisted host.
func TestDecide(t *testing.T) {
	pol := func(m Mode) *Policy { return &Policy{Mode: m, MaxAge: time.Hour, MX: []string{"*.mx.example.com"}} }
	cases := []struct {
		name   string
		policy *Policy
		host   string
		want   Decision // Err compared by errors.Is(ErrMXMismatch)
	}{
		{"no policy", nil, "a.mx.example.com", Decision{}},
		{"none, listed", pol(None), "a.mx.example.com", Decision{}},
		{"none, not listed", pol(None), "other.example", Decision{}},
		{"enforce, listed", pol(Enforce), "a.mx.example.com", Decision{Policy: true, Enforce: true}},
		{"enforce, listed, case and dot", pol(Enforce), "A.MX.Example.com.", Decision{Policy: true, Enforce: true}},
		{"enforce, not listed", pol(Enforce), "mx.example.com", Decision{Policy: true, Enforce: true, Mismatch: true, Err: ErrMXMismatch}},
		{"enforce, address literal", pol(Enforce), "192.0.2.1", Decision{Policy: true, Enforce: true, Mismatch: true, Err: ErrMXMismatch}},
		{"testing, listed", pol(Testing), "a.mx.example.com", Decision{Policy: true}},
		{"testing, not listed", pol(Testing), "other.example", Decision{Policy: true, Mismatch: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := Result{Domain: "example.com", Policy: tc.policy}
			got := r.Decide(tc.host)
			if (got.Err != nil) != (tc.want.Err != nil) || got.Err != nil && !errors.Is(got.Err, ErrMXMismatch) {
				t.Errorf("Err = %v, want %v", got.Err, tc.want.Err)
			}
			got.Err, tc.want.Err = nil, nil
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestNewPolicy: our own policy, its text and its id.
func TestNewPolicy(t *testing.T) {
	p, err := NewPolicy(Enforce, 7*24*time.Hour, "MX.Example.org.", "mx2.example.org")
	if err != nil {
		t.Fatal(err)
	}
	const want = "version: STSv1\r\nmode: enforce\r\nmx: mx.example.org\r\nmx: mx2.example.org\r\nmax_age: 604800\r\n"
	if p.String() != want {
		t.Errorf("String = %q, want %q", p.String(), want)
	}
	if !validID(p.ID()) || len(p.ID()) != 32 {
		t.Errorf("ID %q is not 32 letters and digits", p.ID())
	}
	q, _ := NewPolicy(Testing, 7*24*time.Hour, "mx.example.org", "mx2.example.org")
	r, _ := NewPolicy(Enforce, 7*24*time.Hour, "mx.example.org", "mx2.example.org")
	if q.ID() == p.ID() || r.ID() != p.ID() {
		t.Errorf("ids: %s (testing) %s (enforce) %s (enforce again): the id must follow the policy", q.ID(), p.ID(), r.ID())
	}
	for _, bad := range []struct {
		mode   Mode
		maxAge time.Duration
		mx     []string
	}{
		{Enforce, time.Hour, nil},
		{"report", time.Hour, []string{"mx.example.org"}},
		{Enforce, -time.Second, []string{"mx.example.org"}},
		{Enforce, MaxMaxAge + time.Second, []string{"mx.example.org"}},
		{Enforce, time.Hour, []string{"mx example.org"}},
		{Enforce, time.Hour, []string{"mx.example.org\nmode: none"}},
	} {
		if p, err := NewPolicy(bad.mode, bad.maxAge, bad.mx...); err == nil {
			t.Errorf("NewPolicy(%q, %v, %q) = %+v", bad.mode, bad.maxAge, bad.mx, p)
		}
	}
	if p, err := NewPolicy(None, time.Hour); err != nil || p.Mode != None {
		t.Errorf("NewPolicy(none) = %+v, %v", p, err)
	}
}

// FuzzParsePolicy: no panic; a policy that parses keeps the rules of
// §3.2 and comes back the same from its own text.
func FuzzParsePolicy(f *testing.F) {
	for _, s := range []string{
		"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n",
		"version: STSv1\nmode: testing\nmx: mx.example.com\nmax_age: 86400",
		"version: STSv1\nmode: none\nmax_age: 0\n",
		"version:STSv1\nmode: enforce\nmode: bogus\nx-y: z w\nmx: *.xn--bcher-kva.example\nmax_age: 31557600\n",
		"version: STSv1\n\nmode: enforce\n",
		"version: STSv1\rmode: enforce\r",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		p, err := ParsePolicy(text)
		if err != nil {
			if !errors.Is(err, errInvalid) {
				t.Fatalf("%q: error %v does not wrap errInvalid", text, err)
			}
			return
		}
		switch p.Mode {
		case Enforce, Testing:
			if len(p.MX) == 0 {
				t.Fatalf("%q: mode %s without mx", text, p.Mode)
			}
		case None:
		default:
			t.Fatalf("%q: mode %q", text, p.Mode)
		}
		if p.MaxAge < 0 || p.MaxAge > MaxMaxAge || p.MaxAge%time.Second != 0 {
			t.Fatalf("%q: max_age %v", text, p.MaxAge)
		}
		for _, mx := range p.MX {
			if q, err := parseMXPattern(mx); err != nil || q != mx {
				t.Fatalf("%q: mx %q: %v", text, mx, err)
			}
		}
		if !strings.HasPrefix(text, "version:") {
			t.Fatalf("%q parses without the version first", text)
		}
		q, err := ParsePolicy(p.String())
		if err != nil || !reflect.DeepEqual(p, q) {
			t.Fatalf("%q: %+v; from its String %q: %+v, %v", text, p, p.String(), q, err)
		}
	})
}

// TestParseRecord: TXT records of §3.1, good and bad.
func TestParseRecord(t *testing.T) {
	good := []struct{ txt, id string }{
		{"v=STSv1; id=20160831085700Z;", "20160831085700Z"},
		{"v=STSv1;id=1", "1"},
		{"v=STSv1 ; id=abc", "abc"},
		{"v=STSv1\t;\tid=abc\t;\t", "abc"},
		{"v=STSv1; id=abc; foo=bar", "abc"},
		{"v=STSv1; foo=bar; id=abc", "abc"},
		{"v=STSv1; id=abc; id=def", "abc"},
		{"v=STSv1; id=abc; id=a-b", "abc"},
		{"v=STSv1; id=abc; v=STSv2", "abc"},
		{"v=STSv1; ID=x; id=abc", "abc"},
		{"v=STSv1; id=" + strings.Repeat("A1", 16), strings.Repeat("A1", 16)},
		{"v=STSv1; ext.a_b-c=!\"#$%&'()*+,-./:<>?@[]^_`{|}~; id=abc", "abc"},
	}
	for _, tc := range good {
		rec, err := ParseRecord(tc.txt)
		if err != nil || rec.ID != tc.id {
			t.Errorf("ParseRecord(%q) = %+v, %v; want id %q", tc.txt, rec, err, tc.id)
		}
		if !isSTS(tc.txt) {
			t.Errorf("%q not taken as an MTA-STS record", tc.txt)
		}
	}
	bad := []string{
		"",
		"v=STSv1",
		"v=STSv1;",
		"v=STSv1; ",
		"v=STSv10; id=1",
		"v=stsv1; id=1",
		"V=STSv1; id=1",
		" v=STSv1; id=1",
		"v=STSv1 id=1",
		"v = STSv1; id=1",
		"v=STSv1; id=",
		"v=STSv1; id=a-b",
		"v=STSv1; id=a_b",
		"v=STSv1; id=" + strings.Repeat("a", 33),
		"v=STSv1; ID=abc",
		"v=STSv1; id = abc",
		"v=STSv1; id =abc",
		"v=STSv1; id=abc ",
		"v=STSv1; id=abc;;",
		"v=STSv1;; id=abc",
		"v=STSv1; foo=bar",
		"v=STSv1; id=abc; =x",
		"v=STSv1; id=abc; foo=",
		"v=STSv1; id=abc; f o=x",
		"v=STSv1; id=abc; _f=x",
		"v=STSv1; id=abc=def",
		"v=STSv1; id=abc; foo=a=b",
		"v=STSv1; id=abc\x00",
		"v=STSv1; id=日本",
	}
	for _, txt := range bad {
		if rec, err := ParseRecord(txt); err == nil {
			t.Errorf("ParseRecord(%q) = %+v", txt, rec)
		}
	}
}

// FuzzParseRecord: no panic; a record that parses is an MTA-STS record
// with a valid id, which its String gives back.
func FuzzParseRecord(f *testing.F) {
	for _, s := range []string{
		"v=STSv1; id=20160831085700Z;",
		"v=STSv1 ;id=abc; ext=v; id=def",
		"v=STSv1; foo=bar",
		"v=STSv10; id=1",
		"v=STSv1;\tid=" + strings.Repeat("9", 32) + "\t;",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, txt string) {
		rec, err := ParseRecord(txt)
		if err != nil {
			return
		}
		if !isSTS(txt) || !validID(rec.ID) {
			t.Fatalf("%q: %+v", txt, rec)
		}
		if again, err := ParseRecord(rec.String()); err != nil || again != rec {
			t.Fatalf("%q: %+v; from %q: %+v, %v", txt, rec, rec.String(), again, err)
		}
	})
}
