package authres

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"elit.local/elit/internal/testlib"
)

// sample is the field of a message that passed every check.
var sample = Header{AuthServID: "mx.example.org", Results: []Result{
	{Method: "spf", Result: "pass", Properties: []Property{Prop(SMTP, "mailfrom", "alice@example.com"), Prop(SMTP, "helo", "mail.example.com")}},
	{Method: "dkim", Result: "pass", Properties: []Property{Prop(Head, "d", "example.com"), Prop(Head, "i", "@example.com"), Prop(Head, "b", "abcd+/EF")}},
	{Method: "dmarc", Result: "pass", Comment: "p=reject dis=none", Properties: []Property{Prop(Head, "from", "example.com")}},
	{Method: "arc", Result: "none"},
	{Method: "iprev", Result: "pass", Comment: "mail.example.com", Properties: []Property{Prop(Policy, "iprev", "192.0.2.25")}},
}}

func TestField(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    Header
		want string
	}{
		{"every method", sample, "Authentication-Results: mx.example.org;\r\n" +
			"\tspf=pass smtp.mailfrom=alice@example.com smtp.helo=mail.example.com;\r\n" +
			"\tdkim=pass header.d=example.com header.i=@example.com\r\n" +
			"\theader.b=\"abcd+/EF\";\r\n" +
			"\tdmarc=pass (p=reject dis=none) header.from=example.com;\r\n" +
			"\tarc=none;\r\n" +
			"\tiprev=pass (mail.example.com) policy.iprev=192.0.2.25\r\n"},
		{"none", Header{AuthServID: "mx.example.org"}, "Authentication-Results: mx.example.org; none\r\n"},
		{"reason, version, quoting", Header{AuthServID: "mx example", Version: 1, Results: []Result{
			{Method: "spf", Result: "fail", Reason: `192.0.2.1 is "not" allowed`, Properties: []Property{Prop(SMTP, "mailfrom", "a b@example.com")}},
		}}, "Authentication-Results: \"mx example\" 1;\r\n\tspf=fail reason=\"192.0.2.1 is \\\"not\\\" allowed\"\r\n\tsmtp.mailfrom=\"a b@example.com\"\r\n"},
		{"long properties fold", Header{AuthServID: "mx.example.org", Results: []Result{
			{Method: "dkim", Result: "fail", Comment: "signature did not verify", Properties: []Property{
				Prop(Head, "d", "a-rather-long-subdomain.of-an-organization.example.com"),
				Prop(Head, "i", "@a-rather-long-subdomain.of-an-organization.example.com"),
				Prop(Head, "s", "selector2024"),
			}},
		}}, "Authentication-Results: mx.example.org;\r\n" +
			"\tdkim=fail (signature did not verify)\r\n" +
			"\theader.d=a-rather-long-subdomain.of-an-organization.example.com\r\n" +
			"\theader.i=@a-rather-long-subdomain.of-an-organization.example.com\r\n" +
			"\theader.s=selector2024\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.h.Field()
			if got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
			for _, line := range strings.Split(strings.TrimSuffix(got, "\r\n"), "\r\n") {
				if len(strings.ReplaceAll(line, "\t", "        ")) > maxLine {
					t.Errorf("line over %d: %q", maxLine, line)
				}
			}
			// What we write, we read back.
			name, value, _ := strings.Cut(got, ":")
			back, err := Parse(value)
			if name != "Authentication-Results" || err != nil || !reflect.DeepEqual(back, tc.h) {
				t.Errorf("read back %+v, %v", back, err)
			}
			if back, err := Parse(tc.h.Value()); err != nil || !reflect.DeepEqual(back, tc.h) {
				t.Errorf("Value read back %+v, %v", back, err)
			}
		})
	}
	aar := sample.AAR(2)
	if !strings.HasPrefix(aar, "ARC-Authentication-Results: i=2; mx.example.org;\r\n\tspf=pass") {
		t.Errorf("AAR: %q", aar)
	}
}

// rfcExamples are the fields of RFC 8601 Appendix B (values after the
// colon) with what they say.
var rfcExamples = []struct {
	value string
	want  Header
}{
	{" example.org 1; none", Header{AuthServID: "example.org", Version: 1}},
	{" example.com; spf=pass smtp.mailfrom=example.net", Header{AuthServID: "example.com", Results: []Result{
		{Method: "spf", Result: "pass", Properties: []Property{Prop("smtp", "mailfrom", "example.net")}}}}},
	{" example.com;\r\n          auth=pass (cram-md5) smtp.auth=sender@example.net;\r\n          spf=pass smtp.mailfrom=example.net",
		Header{AuthServID: "example.com", Results: []Result{
			{Method: "auth", Result: "pass", Comment: "cram-md5", Properties: []Property{Prop("smtp", "auth", "sender@example.net")}},
			{Method: "spf", Result: "pass", Properties: []Property{Prop("smtp", "mailfrom", "example.net")}}}}},
	{" example.com; iprev=pass\r\n          policy.iprev=192.0.2.200", Header{AuthServID: "example.com", Results: []Result{
		{Method: "iprev", Result: "pass", Properties: []Property{Prop("policy", "iprev", "192.0.2.200")}}}}},
	{" example.com;\r\n          dkim=pass (good signature) header.d=example.com", Header{AuthServID: "example.com", Results: []Result{
		{Method: "dkim", Result: "pass", Comment: "good signature", Properties: []Property{Prop("header", "d", "example.com")}}}}},
	{" example.com;\r\n          sender-id=fail header.from=example.com;\r\n          dkim=pass (good signature) header.d=sub.example.com",
		Header{AuthServID: "example.com", Results: []Result{
			{Method: "sender-id", Result: "fail", Properties: []Property{Prop("header", "from", "example.com")}},
			{Method: "dkim", Result: "pass", Comment: "good signature", Properties: []Property{Prop("header", "d", "sub.example.com")}}}}},
	{" mail-router.example.net;\r\n          dkim=pass (good signature) header.d=newyork.example.com\r\n                header.b=oINEO8hg;\r\n          dkim=fail (bad signature) header.d=newyork.example.com\r\n                header.b=EToRSuvU",
		Header{AuthServID: "mail-router.example.net", Results: []Result{
			{Method: "dkim", Result: "pass", Comment: "good signature", Properties: []Property{Prop("header", "d", "newyork.example.com"), Prop("header", "b", "oINEO8hg")}},
			{Method: "dkim", Result: "fail", Comment: "bad signature", Properties: []Property{Prop("header", "d", "newyork.example.com"), Prop("header", "b", "EToRSuvU")}}}}},
	{" example.com;\r\n          dkim=pass reason=\"good signature\"\r\n            header.i=@mail-router.example.net;\r\n          dkim=fail reason=\"bad signature\"\r\n            header.i=@newyork.example.com",
		Header{AuthServID: "example.com", Results: []Result{
			{Method: "dkim", Result: "pass", Reason: "good signature", Properties: []Property{Prop("header", "i", "@mail-router.example.net")}},
			{Method: "dkim", Result: "fail", Reason: "bad signature", Properties: []Property{Prop("header", "i", "@newyork.example.com")}}}}},
	{" foo.example.net (foobar) 1 (baz);\r\n    dkim (Because I like it) / 1 (One yay) = (wait for it) fail\r\n      policy (A dot can go here) . (like that) expired\r\n      (this surprised me) = (as I wasn't expecting it) 1362471462",
		Header{AuthServID: "foo.example.net", Version: 1, Results: []Result{
			{Method: "dkim", MethodVersion: 1, Result: "fail", Properties: []Property{Prop("policy", "expired", "1362471462")}}}}},
}

func TestParseRFC(t *testing.T) {
	for _, tc := range rfcExamples {
		got, err := Parse(tc.value)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Parse(%q)\n= %+v, %v\nwant %+v", tc.value, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", " ;", " example.com", " example.com; spf", " example.com; spf=", " example.com; spf=pass smtp",
		" example.com; spf=pass smtp.mailfrom", " example.com; spf=pass reason", " \"unclosed; spf=pass", " example.com; =pass"} {
		if h, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) = %+v", bad, h)
		}
	}
}

func TestOurs(t *testing.T) {
	header := []Field{
		{"Received", " from x"},
		{"Authentication-Results", " mx.example.org; spf=pass smtp.mailfrom=a@example.com"},
		{"Authentication-Results", " other.example.net; dkim=pass header.d=example.com"},
		{"authentication-results", " (forged) MX.Example.ORG 1; this is not even well formed"},
		{"Authentication-Results", " \"mx.example.org\"; none"},
		{"Authentication-Results", " mx.example.org.evil.example; none"},
		{"X-Authentication-Results", " mx.example.org; none"},
	}
	got := Ours(header, "mx.example.org")
	if !reflect.DeepEqual(got, []int{1, 3, 4}) {
		t.Errorf("Ours = %v", got)
	}
}

// TestPythonAuthres: Debian's python3-authres (under python3-authheaders)
// reads the fields we write as we meant them.
func TestPythonAuthres(t *testing.T) {
	fields := []string{sample.Field(), Header{AuthServID: "mx.example.org"}.Field(), Header{AuthServID: "mx.example.org", Results: []Result{
		{Method: "spf", Result: "softfail", Reason: "not quite", Properties: []Property{Prop(SMTP, "mailfrom", "x@example.net")}},
	}}.Field()}
	script := `
import json, sys, authres
out = []
for f in json.load(sys.stdin):
    h = authres.AuthenticationResultsHeader.parse(f)
    out.append({"id": h.authserv_id, "results": [
        {"method": r.method, "result": r.result, "reason": r.reason or "",
         "props": [[p.type, p.name, p.value] for p in r.properties]} for r in h.results]})
print(json.dumps(out))
`
	outb := []byte(testlib.Python(t, []string{"authres"}, "python3-authheaders", script, fields))
	type res struct {
		Method, Result, Reason string
		Props                  [][3]string
	}
	var theirs []struct {
		ID      string
		Results []res
	}
	if err := json.Unmarshal(outb, &theirs); err != nil {
		t.Fatalf("%s: %v", outb, err)
	}
	for i, f := range fields {
		_, value, _ := strings.Cut(f, ":")
		ours, err := Parse(value)
		if err != nil {
			t.Fatal(err)
		}
		if theirs[i].ID != ours.AuthServID || len(theirs[i].Results) != len(ours.Results) {
			t.Errorf("%q: authres read %+v", f, theirs[i])
			continue
		}
		for j, r := range ours.Results {
			th := theirs[i].Results[j]
			if th.Method != r.Method || th.Result != r.Result || th.Reason != r.Reason || len(th.Props) != len(r.Properties) {
				t.Errorf("%q: authres read %+v, we %+v", f, th, r)
				continue
			}
			for k, p := range r.Properties {
				if th.Props[k] != [3]string{p.Type, p.Name, p.Value} {
					t.Errorf("%q: authres read %v, we %+v", f, th.Props[k], p)
				}
			}
		}
	}
}

// FuzzParse: no panic, and what parses is written back to the same
// meaning (Field and Value read back equal, comments as written).
func FuzzParse(f *testing.F) {
	for _, e := range rfcExamples {
		f.Add(e.value)
	}
	f.Add(sample.Value())
	f.Add(" x; spf=pass smtp.mailfrom=\"a b\"@example.com (c) smtp.helo=[192.0.2.1];")
	f.Add(" x; dmarc=fail reason=\"a\\\"b\" header.from=é.example")
	f.Fuzz(func(t *testing.T, value string) {
		h, err := Parse(value)
		AuthServID(value)
		if err != nil {
			return
		}
		for i := range h.Results {
			h.Results[i].Comment = strings.NewReplacer("\r", " ", "\n", " ").Replace(h.Results[i].Comment)
		}
		field := h.Field()
		name, v, _ := strings.Cut(field, ":")
		back, err := Parse(v)
		if name != "Authentication-Results" || err != nil {
			t.Fatalf("%q: wrote %q, which reads %v", value, field, err)
		}
		if !reflect.DeepEqual(normal(back), normal(h)) {
			t.Fatalf("%q: wrote %q, read back\n%+v\nwant\n%+v", value, field, back, h)
		}
		if id, ok := AuthServID(v); !ok || id != h.AuthServID {
			t.Fatalf("%q: authserv-id %q %v", field, id, ok)
		}
	})
}

// normal makes nil and empty slices alike.
func normal(h Header) Header {
	if len(h.Results) == 0 {
		h.Results = nil
	}
	for i := range h.Results {
		if len(h.Results[i].Properties) == 0 {
			h.Results[i].Properties = nil
		}
	}
	return h
}
