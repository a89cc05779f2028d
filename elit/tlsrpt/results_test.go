package tlsrpt

import (
	"errors"
	"os"
	"testing"
	"time"

	"elit.local/elit/deliver"
)

// outcome is a direct delivery's outcome to mx.example.com.
func outcome(policy string, mod func(*deliver.TLSOutcome)) deliver.TLSOutcome {
	o := deliver.TLSOutcome{TLSDestination: deliver.TLSDestination{Transport: "direct", Domain: "example.com", Host: "mx.example.com"},
		Addr: "192.0.2.25:25", LocalAddr: "192.0.2.1:40000", Policy: policy, Required: deliver.TLSRequirement{Mode: deliver.TLSVerified, Required: true},
		Achieved: deliver.TLSVerified, STARTTLS: true}
	if mod != nil {
		mod(&o)
	}
	return o
}

var errCert = errors.New("x509: certificate signed by unknown authority")

// TestClassify: what each outcome counts for in a report.
func TestClassify(t *testing.T) {
	failed := func(ft string) func(*deliver.TLSOutcome) {
		return func(o *deliver.TLSOutcome) { o.Err, o.Failure, o.Achieved = errCert, ft, deliver.TLSNone }
	}
	for _, c := range []struct {
		name    string
		o       deliver.TLSOutcome
		counted bool
		failure string
		policy  string
	}{
		{"sts success", outcome("sts", nil), true, "", "sts"},
		{"sts failure", outcome("sts", failed("certificate-not-trusted")), true, "certificate-not-trusted", "sts"},
		{"sts testing fallback", outcome("sts", func(o *deliver.TLSOutcome) { o.Fallback, o.Achieved = true, deliver.TLSNone }), false, "", ""},
		{"tlsa failure", outcome("tlsa", failed("validation-failure")), true, "validation-failure", "tlsa"},
		{"no policy, verified", outcome("no-policy-found", nil), true, "", "no-policy-found"},
		{"no policy, verification failed", outcome("no-policy-found", func(o *deliver.TLSOutcome) {
			o.Required.Required = false
			failed("certificate-not-trusted")(o)
		}), false, "", ""},
		{"no policy, unverified", outcome("no-policy-found", func(o *deliver.TLSOutcome) {
			o.Required, o.Achieved, o.Fallback = deliver.TLSRequirement{Mode: deliver.TLSUnverified}, deliver.TLSUnverified, true
		}), true, "", "no-policy-found"},
		{"no policy, no STARTTLS", outcome("no-policy-found", func(o *deliver.TLSOutcome) { o.STARTTLS, o.Achieved = false, deliver.TLSNone }), true, "starttls-not-supported", "no-policy-found"},
		{"no policy, unverified handshake failed", outcome("no-policy-found", func(o *deliver.TLSOutcome) {
			o.Required = deliver.TLSRequirement{Mode: deliver.TLSUnverified}
			failed("validation-failure")(o)
		}), true, "validation-failure", "no-policy-found"},
		{"other policy names", outcome("test", nil), true, "", "no-policy-found"},
		{"policy error", outcome("", func(o *deliver.TLSOutcome) {
			o.Required = deliver.TLSRequirement{}
			o.Err, o.Failure, o.Achieved = errors.New("timeout"), "sts-policy-fetch-error", deliver.TLSNone
		}), true, "sts-policy-fetch-error", "sts"},
		{"relay", outcome("no-policy-found", func(o *deliver.TLSOutcome) { o.Transport, o.Domain = "smarthost", "" }), false, "", ""},
		{"our report", outcome("sts", func(o *deliver.TLSOutcome) { o.TLSReport = true }), false, "", ""},
	} {
		pol, counted, fd := Classify(c.o)
		got := ""
		if fd != nil {
			got = fd.ResultType
			if fd.SendingMTAIP != "192.0.2.1" || fd.ReceivingIP != "192.0.2.25" || fd.ReceivingMXHostname != "mx.example.com" || fd.FailedSessionCount != 1 {
				t.Errorf("%s: failure detail %+v", c.name, fd)
			}
		}
		if counted != c.counted || got != c.failure || counted && pol.Type != c.policy {
			t.Errorf("%s: counted %v, failure %q, policy %q; want %v, %q, %q", c.name, counted, got, pol.Type, c.counted, c.failure, c.policy)
		}
	}
}

// TestStore: results are counted per UTC day and report domain (a DANE
// result for the MX host too), merged by policy and failure, kept across
// a restart, bounded in days, and a day goes once its reports are sent.
func TestStore(t *testing.T) {
	now := time.Date(2026, 3, 10, 23, 59, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	dir := t.TempDir()
	s, err := OpenStore(dir, clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	dane := func(o *deliver.TLSOutcome) {
		o.PolicyDomain, o.PolicyStrings = "mx.example.com", []string{"3 1 1 aabb"}
	}
	s.ReportTLS(outcome("sts", nil))
	s.ReportTLS(outcome("sts", nil))
	s.ReportTLS(outcome("sts", func(o *deliver.TLSOutcome) { o.Err, o.Failure = errCert, "certificate-not-trusted" }))
	s.ReportTLS(outcome("sts", func(o *deliver.TLSOutcome) { o.Err, o.Failure = errCert, "certificate-not-trusted" }))
	s.ReportTLS(outcome("tlsa", dane))
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenStore(dir, clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	day := "20260310"
	if got := s.Days("20260311"); len(got) != 1 || got[0] != day {
		t.Fatalf("days %v", got)
	}
	domains, host := s.Pending(day)
	if len(domains) != 2 || domains[0] != "example.com" || domains[1] != "mx.example.com" || host["example.com"] || !host["mx.example.com"] {
		t.Fatalf("report domains %v %v", domains, host)
	}
	res := s.Results(day, "example.com")
	if len(res) != 2 || res[0].Summary != (Summary{2, 2}) || len(res[0].FailureDetails) != 1 || res[0].FailureDetails[0].FailedSessionCount != 2 ||
		res[1].Policy.Type != "tlsa" || res[1].Policy.Domain != "mx.example.com" || res[1].Summary != (Summary{1, 0}) {
		t.Errorf("example.com: %+v", res)
	}
	if res := s.Results(day, "mx.example.com"); len(res) != 1 || res[0].Policy.Type != "tlsa" {
		t.Errorf("mx.example.com: %+v", res)
	}
	// The next day's results go to their own day.
	now = now.Add(2 * time.Minute)
	s.ReportTLS(outcome("sts", nil))
	if got := s.Days("20260312"); len(got) != 2 {
		t.Errorf("days %v", got)
	}
	s.MarkSent(day, "example.com")
	if _, err := os.Stat(s.path(day)); err != nil {
		t.Errorf("the day went before all its reports: %v", err)
	}
	s.MarkSent(day, "mx.example.com")
	if _, err := os.Stat(s.path(day)); err == nil || len(s.Days("20260312")) != 1 {
		t.Errorf("the day stays once reported")
	}
	// Days past MaxDays are dropped.
	now = now.AddDate(0, 0, MaxDays+1)
	s.ReportTLS(outcome("sts", nil))
	if got := s.Days("29990101"); len(got) != 1 || got[0] != DayName(now) {
		t.Errorf("days %v", got)
	}
}
