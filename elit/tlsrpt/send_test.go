package tlsrpt

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"elit.local/elit/deliver"
	"elit.local/elit/dns"
	"elit.local/elit/internal/testlib"
	"elit.local/elit/queue"
)

// TestSend: the day's reports go, once it has ended, to each report
// domain's rua: by mail through the queue (signed, TLS-Required: No, the
// RFC's Subject and fields, the gzipped JSON in a multipart/report) and
// by HTTPS POST (application/tlsrpt+gzip, verified TLS); the MX host
// gets its DANE results; a domain without a record gets nothing; one
// whose record cannot be looked up is tried again later. Every report
// is the RFC's JSON structure, as Python's jsonschema checks it.
func TestSend(t *testing.T) {
	var mu sync.Mutex
	posted := map[string][]byte{}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		zr, err := gzip.NewReader(r.Body)
		if err != nil || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/tlsrpt+gzip" {
			http.Error(w, "bad report", http.StatusBadRequest)
			return
		}
		b, _ := io.ReadAll(zr)
		mu.Lock()
		posted[r.URL.Path] = b
		mu.Unlock()
	}))
	defer srv.Close()
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	s, err := OpenStore(t.TempDir(), clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	dane := func(o *deliver.TLSOutcome) {
		o.PolicyDomain, o.PolicyStrings = "mx.example.com", []string{"3 1 1 aabb"}
	}
	s.ReportTLS(outcome("sts", func(o *deliver.TLSOutcome) {
		o.PolicyStrings, o.MXHosts = []string{"version: STSv1", "mode: enforce"}, []string{"*.example.com"}
	}))
	s.ReportTLS(outcome("tlsa", func(o *deliver.TLSOutcome) {
		dane(o)
		o.Err, o.Failure = errors.New("no TLSA record matches"), "validation-failure"
	}))
	s.ReportTLS(outcome("no-policy-found", func(o *deliver.TLSOutcome) {
		o.Domain, o.Host, o.STARTTLS, o.Achieved = "quiet.example", "mx.quiet.example", false, deliver.TLSNone
	}))
	s.ReportTLS(outcome("no-policy-found", func(o *deliver.TLSOutcome) { o.Domain, o.Host = "down.example", "mx.down.example" }))
	q, err := queue.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var notified []*queue.Message
	resolver := &dns.Mem{TXTs: map[string][]string{
		"_smtp._tls.example.com":    {"v=TLSRPTv1; rua=mailto:tlsrpt@example.com," + srv.URL + "/domain"},
		"_smtp._tls.mx.example.com": {"v=TLSRPTv1; rua=" + srv.URL + "/host"},
	}, Fail: map[string]error{"_smtp._tls.down.example": errors.New("SERVFAIL")}}
	sender := &Sender{Store: s, Resolver: resolver, Domain: "example.org", Hostname: "mx.example.org", From: "postmaster@example.org",
		Queue: q, Notify: func(m *queue.Message) { notified = append(notified, m) }, HTTP: srv.Client(), Now: clock,
		Sign: func(msg []byte) (string, error) { return "DKIM-Signature: v=1; d=example.org\r\n", nil }}
	sender.SendDue(context.Background())
	if len(notified) != 0 || len(posted) != 0 {
		t.Fatal("reports sent before the day ended")
	}
	now = now.Add(13 * time.Hour) // the next day, 01:00
	sender.SendDue(context.Background())

	msgs, _ := q.List()
	if len(msgs) != 1 || len(notified) != 1 {
		t.Fatalf("%d reports queued, %d notified; want 1", len(msgs), len(notified))
	}
	m := msgs[0]
	if m.From != "postmaster@example.org" || len(m.Recipients) != 1 || m.Recipients[0].Address != "tlsrpt@example.com" ||
		!m.TLSRequiredNo || !m.TLSReport || !strings.HasPrefix(m.Header, "DKIM-Signature: ") {
		t.Errorf("queued %+v", m)
	}
	f, _ := q.Data(m.ID)
	data, _ := io.ReadAll(f)
	f.Close()
	for _, want := range []string{"\r\nSubject: Report Domain: example.com Submitter: example.org Report-ID: <20260310.example.com.",
		"\r\nTLS-Report-Domain: example.com\r\n", "\r\nTLS-Report-Submitter: example.org\r\n", "\r\nTLS-Required: No\r\n",
		"Content-Type: multipart/report; report-type=\"tlsrpt\";", "Content-Type: application/tlsrpt+gzip\r\n",
		"filename=\"example.org!example.com!1773100800!1773187199!"} {
		if !bytes.Contains(data, []byte(want)) {
			t.Errorf("the report mail lacks %q:\n%s", want, data)
		}
	}
	mailed, err := ParseMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(posted) != 2 {
		t.Fatalf("posted %d reports, want 2", len(posted))
	}
	domainRep, hostRep := strictDecode(t, posted["/domain"]), strictDecode(t, posted["/host"])
	if domainRep.ReportID != mailed.ReportID || len(domainRep.Policies) != 2 || domainRep.Policies[0].Policy.Type != "sts" ||
		domainRep.Policies[1].Policy.Type != "tlsa" || domainRep.Policies[1].Summary.Failed != 1 {
		t.Errorf("the domain's report: %+v", domainRep)
	}
	if len(hostRep.Policies) != 1 || hostRep.Policies[0].Policy.Domain != "mx.example.com" || hostRep.Policies[0].FailureDetails[0].ResultType != "validation-failure" {
		t.Errorf("the host's report: %+v", hostRep)
	}
	if !domainRep.DateRange.Start.Equal(time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)) || !domainRep.DateRange.End.Equal(time.Date(2026, 3, 10, 23, 59, 59, 0, time.UTC)) ||
		domainRep.OrganizationName != "example.org" || domainRep.ContactInfo != "postmaster@example.org" {
		t.Errorf("the report's head: %+v", domainRep)
	}
	checkSchema(t, string(posted["/domain"]), string(posted["/host"]))
	// down.example's record could not be looked up: it stays for later;
	// the others are done.
	if domains, _ := s.Pending("20260310"); len(domains) != 1 || domains[0] != "down.example" {
		t.Errorf("pending after sending: %v", domains)
	}
	resolver.Fail = nil
	sender.SendDue(context.Background())
	if got := s.Days("29990101"); len(got) != 0 {
		t.Errorf("days left: %v", got)
	}
}

// checkSchema validates reports against RFC 8460 §4.4's JSON structure
// in a second implementation: Python's json and jsonschema (Debian's
// python3-jsonschema), with the schema written from the RFC: the field
// names, their types, the policy types and result types.
func checkSchema(t *testing.T, reports ...string) {
	t.Helper()
	out := testlib.Python(t, []string{"jsonschema"}, "python3-jsonschema", pySchema, map[string]any{"reports": reports, "result_types": ResultTypes})
	if strings.TrimSpace(out) != "ok" {
		t.Errorf("python: %s", out)
	}
}

const pySchema = `
import json, sys, jsonschema
inp = json.load(sys.stdin)
date = {"type": "string", "format": "date-time", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"}
count = {"type": "integer", "minimum": 0}
schema = {
  "type": "object",
  "required": ["organization-name", "date-range", "contact-info", "report-id", "policies"],
  "additionalProperties": False,
  "properties": {
    "organization-name": {"type": "string", "minLength": 1},
    "date-range": {"type": "object", "required": ["start-datetime", "end-datetime"], "additionalProperties": False,
                   "properties": {"start-datetime": date, "end-datetime": date}},
    "contact-info": {"type": "string", "minLength": 1},
    "report-id": {"type": "string", "minLength": 1},
    "policies": {"type": "array", "items": {
      "type": "object", "required": ["policy", "summary"], "additionalProperties": False,
      "properties": {
        "policy": {"type": "object", "required": ["policy-type", "policy-domain"], "additionalProperties": False,
          "properties": {
            "policy-type": {"enum": ["sts", "tlsa", "no-policy-found"]},
            "policy-string": {"type": "array", "items": {"type": "string"}},
            "policy-domain": {"type": "string", "minLength": 1},
            "mx-host": {"type": "array", "items": {"type": "string"}}}},
        "summary": {"type": "object", "required": ["total-successful-session-count", "total-failure-session-count"], "additionalProperties": False,
          "properties": {"total-successful-session-count": count, "total-failure-session-count": count}},
        "failure-details": {"type": "array", "items": {
          "type": "object", "required": ["result-type", "failed-session-count"], "additionalProperties": False,
          "properties": {
            "result-type": {"enum": inp["result_types"]},
            "sending-mta-ip": {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
            "receiving-mx-hostname": {"type": "string"},
            "receiving-mx-helo": {"type": "string"},
            "receiving-ip": {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
            "failed-session-count": count,
            "additional-information": {"type": "string"},
            "failure-reason-code": {"type": "string"}}}}}}}}}
checker = jsonschema.FormatChecker()
for r in inp["reports"]:
    doc = json.loads(r)
    jsonschema.validate(doc, schema, format_checker=checker)
    for p in doc["policies"]:
        s = p["summary"]
        fails = sum(f["failed-session-count"] for f in p.get("failure-details", []))
        if fails > s["total-failure-session-count"]:
            sys.exit("more failure details than failures: %r" % p)
print("ok")
`
