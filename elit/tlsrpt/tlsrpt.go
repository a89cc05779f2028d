// Package tlsrpt is SMTP TLS Reporting (RFC 8460) for Elit: the
// "_smtp._tls" TXT record (record.go); the aggregate report, its JSON
// (§4) and the mail that carries it (§5.3, report.go); the results of
// every outbound TLS attempt, counted per UTC day for each policy domain
// and, for DANE, for each MX host (results.go); the daily sending of
// reports to the domains' "rua" URIs, by mail through the queue and by
// HTTPS POST (send.go); and the reports other senders send us, read from
// the mail to our reporting address or to postmaster (inbox.go).
//
// The results come from the deliverer's TLS reporter seam
// (deliver.TLSReporter): Store.ReportTLS takes each attempt's outcome.
package tlsrpt

import "elit.local/elit/metrics"

// Policy types (RFC 8460 §4.4, policy-type).
const (
	PolicySTS      = "sts"
	PolicyTLSA     = "tlsa"
	PolicyNotFound = "no-policy-found"
)

// ResultTypes are the result types of RFC 8460 §4.3, in its order:
// negotiation failures (§4.3.1), policy failures for DANE (§4.3.2.1) and
// MTA-STS (§4.3.2.2), and validation-failure for the rest (§4.3.2.3).
var ResultTypes = []string{
	"starttls-not-supported", "certificate-host-mismatch", "certificate-expired", "certificate-not-trusted", "validation-failure",
	"tlsa-invalid", "dnssec-invalid", "dane-required",
	"sts-policy-fetch-error", "sts-policy-invalid", "sts-webpki-invalid",
}

var (
	resultsTotal  = metrics.Default.NewCounterVec("elit_tlsrpt_sessions_total", "Outbound TLS sessions counted for TLS reports, by result (success, failure).", "result")
	sentTotal     = metrics.Default.NewCounterVec("elit_tlsrpt_reports_sent_total", "TLS reports sent, by method (mailto, https).", "method")
	sendErrTotal  = metrics.Default.NewCounter("elit_tlsrpt_report_errors_total", "TLS reports that could not be sent to a reporting URI.")
	receivedTotal = metrics.Default.NewCounter("elit_tlsrpt_reports_received_total", "TLS reports received from other senders.")
	rcvdFailTotal = metrics.Default.NewCounter("elit_tlsrpt_received_failures_total", "Failed sessions that received TLS reports count (other senders' failures to reach us).")
)
