package tlsrpt

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const oracleDir = "../../../shared/oracles/tlsrpt"

// TestParseRFCExample: the example of RFC 8460 Appendix B parses, in its
// original form (mx-host a string) and after Errata ID 6241 (an array),
// to the same report.
func TestParseRFCExample(t *testing.T) {
	var reps []*Report
	for _, name := range []string{"rfc8460-appendix-b-original.json", "rfc8460-appendix-b-errata6241.json"} {
		b, err := os.ReadFile(filepath.Join(oracleDir, name))
		if err != nil {
			t.Fatal(err)
		}
		r, err := Parse(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		reps = append(reps, r)
	}
	r := reps[0]
	if !reflect.DeepEqual(reps[0], reps[1]) {
		t.Errorf("the two forms differ:\n%+v\n%+v", reps[0], reps[1])
	}
	p := r.Policies[0]
	if r.OrganizationName != "Company-X" || r.ReportID != "5065427c-23d3-47ca-b6e0-946ea0e8c4be" ||
		!r.DateRange.Start.Equal(time.Date(2016, 4, 1, 0, 0, 0, 0, time.UTC)) || len(r.Policies) != 1 ||
		p.Policy.Type != "sts" || p.Policy.Domain != "company-y.example" || len(p.Policy.String) != 4 ||
		len(p.Policy.MXHost) != 1 || p.Policy.MXHost[0] != "*.mail.company-y.example" ||
		p.Summary != (Summary{5326, 303}) || len(p.FailureDetails) != 3 ||
		p.FailureDetails[1] != (FailureDetail{ResultType: "starttls-not-supported", SendingMTAIP: "2001:db8:abcd:0013::1", ReceivingMXHostname: "mx2.mail.company-y.example",
			ReceivingIP: "203.0.113.56", FailedSessionCount: 200, AdditionalInformation: "https://reports.company-x.example/report_info ? id = 5065427 c - 23 d3# StarttlsNotSupported "}) ||
		p.FailureDetails[2].FailureReasonCode != "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED" {
		t.Errorf("parsed as %+v", r)
	}
}

// TestParseMessage: the real report mails (Google's, Microsoft's; from
// mox's test data) give their gzipped reports.
func TestParseMessage(t *testing.T) {
	for _, c := range []struct {
		file, org, domain string
	}{
		{"mox-example.eml", "Google Inc.", "test.xmox.nl"},
		{"mox-microsoft.eml", "Microsoft Corporation", "test.xmox.nl"},
	} {
		f, err := os.Open(filepath.Join(oracleDir, c.file))
		if err != nil {
			t.Fatal(err)
		}
		r, err := ParseMessage(f)
		f.Close()
		if err != nil {
			t.Errorf("%s: %v", c.file, err)
			continue
		}
		if r.OrganizationName != c.org || len(r.Policies) == 0 || r.Policies[0].Policy.Domain != c.domain || r.DateRange.Start.IsZero() {
			t.Errorf("%s: %+v", c.file, r)
		}
	}
	if _, err := ParseMessage(strings.NewReader("Subject: hello\r\n\r\nno report\r\n")); err != ErrNoReport {
		t.Errorf("a plain message: %v", err)
	}
}

// TestParseRefuses: what is not a report.
func TestParseRefuses(t *testing.T) {
	good := `{"organization-name":"o","date-range":{"start-datetime":"2026-01-01T00:00:00Z","end-datetime":"2026-01-01T23:59:59Z"},` +
		`"contact-info":"c","report-id":"r","policies":[{"policy":{"policy-type":"no-policy-found","policy-domain":"example.com"},` +
		`"summary":{"total-successful-session-count":1,"total-failure-session-count":0}}]}`
	if _, err := Parse([]byte(good)); err != nil {
		t.Fatalf("the good one: %v", err)
	}
	for _, c := range []struct{ old, new string }{
		{`"policy-type":"no-policy-found"`, `"policy-type":"mta-sts"`},
		{`"policy-domain":"example.com"`, `"policy-domain":""`},
		{`"report-id":"r"`, `"report-id":""`},
		{`"start-datetime":"2026-01-01T00:00:00Z"`, `"start-datetime":"yesterday"`},
		{`"end-datetime":"2026-01-01T23:59:59Z"`, `"end-datetime":"2025-12-31T23:59:59Z"`},
		{`"total-successful-session-count":1`, `"total-successful-session-count":-1`},
		{`"total-successful-session-count":1`, `"total-successful-session-count":"1"`},
		{`,"summary":{"total-successful-session-count":1,"total-failure-session-count":0}`, ``},
		{`"policies":[`, `"policies":3,"x":[`},
		{`{"organization-name"`, `[{"organization-name"`},
	} {
		bad := strings.Replace(good, c.old, c.new, 1)
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("parsed: %s", bad)
		}
	}
	// Microsoft's dates, without a time zone: UTC.
	r, err := Parse([]byte(strings.Replace(good, `"2026-01-01T00:00:00Z"`, `"2026-01-01T00:00:00"`, 1)))
	if err != nil || !r.DateRange.Start.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("a date without zone: %v, %v", r, err)
	}
}

// FuzzParse: any JSON parses or is refused without a panic, and a report
// that parses is written as JSON that parses to the same report.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"rfc8460-appendix-b-original.json", "rfc8460-appendix-b-errata6241.json"} {
		if b, err := os.ReadFile(filepath.Join(oracleDir, name)); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse(data)
		if err != nil {
			return
		}
		out, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("%s: %v", out, err)
		}
		out2, _ := again.Marshal()
		if !bytes.Equal(out, out2) {
			t.Fatalf("written differently:\n%s\n%s", out, out2)
		}
	})
}

// strictDecode decodes our JSON into the report's fields, refusing any
// other: what we write is the RFC's field set and no more.
func strictDecode(t *testing.T, data []byte) *Report {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var r Report
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("%v:\n%s", err, data)
	}
	return &r
}
