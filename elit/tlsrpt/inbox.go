package tlsrpt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/renameio/v2"

	"elit.local/elit/decide"
	"elit.local/elit/mailaddr"
	"elit.local/elit/reply"
)

// Inbox keeps the TLS reports other senders sent us (RFC 8460): what
// they found connecting to our MX. The last MaxReceived are kept, in a
// JSON file rewritten at each (reports come a few a day).
type Inbox struct {
	path string

	mu   sync.Mutex
	list []Received
}

// MaxReceived bounds the reports an Inbox keeps.
const MaxReceived = 200

// Received is a report that came to us.
type Received struct {
	Received time.Time `json:"received"`
	From     string    `json:"from"` // the envelope sender
	Report   Report    `json:"report"`
}

// ReportSummary is a received report in a line: for the log and the
// status page.
type ReportSummary struct {
	Received     time.Time `json:"received"`
	Organization string    `json:"organization"`
	ReportID     string    `json:"report_id"`
	Start        time.Time `json:"start"`
	End          time.Time `json:"end"`
	// Domains are the policy domains reported.
	Domains    []string `json:"domains"`
	Successful int64    `json:"successful"`
	Failed     int64    `json:"failed"`
	// Failures counts the failed sessions by result type.
	Failures map[string]int64 `json:"failures,omitempty"`
}

// Summarize sums a report up.
func Summarize(r Received) ReportSummary {
	s := ReportSummary{Received: r.Received, Organization: r.Report.OrganizationName, ReportID: r.Report.ReportID,
		Start: r.Report.DateRange.Start, End: r.Report.DateRange.End}
	for _, p := range r.Report.Policies {
		if !strings.Contains(" "+strings.Join(s.Domains, " ")+" ", " "+p.Policy.Domain+" ") {
			s.Domains = append(s.Domains, p.Policy.Domain)
		}
		s.Successful += p.Summary.Successful
		s.Failed += p.Summary.Failed
		for _, f := range p.FailureDetails {
			if s.Failures == nil {
				s.Failures = map[string]int64{}
			}
			s.Failures[f.ResultType] += f.FailedSessionCount
		}
	}
	return s
}

// OpenInbox reads the reports kept in path (none yet: an empty inbox).
func OpenInbox(path string) (*Inbox, error) {
	b := &Inbox{path: path}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return b, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tls report inbox: %w", err)
	}
	if err := json.Unmarshal(data, &b.list); err != nil {
		return nil, fmt.Errorf("tls report inbox %s: %w", path, err)
	}
	return b, nil
}

// Add keeps a report.
func (b *Inbox) Add(r Received) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.list = append(b.list, r)
	if len(b.list) > MaxReceived {
		b.list = b.list[len(b.list)-MaxReceived:]
	}
	data, err := json.MarshalIndent(b.list, "", " ")
	if err != nil {
		return err
	}
	if err := renameio.WriteFile(b.path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("tls report inbox: %w", err)
	}
	return nil
}

// List returns the reports kept, oldest first.
func (b *Inbox) List() []Received {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Received(nil), b.list...)
}

// Summaries sums up the reports kept, newest first: what the status page
// shows.
func (b *Inbox) Summaries() []ReportSummary {
	list := b.List()
	out := make([]ReportSummary, len(list))
	for i, r := range list {
		out[len(list)-1-i] = Summarize(r)
	}
	return out
}

// Step is the decide step that takes the TLS reports sent to us on the
// MX: mail to Address (the rua of our own TLSRPT record), which no other
// step routes, is taken here and not queued; a multipart/report with
// report-type=tlsrpt to postmaster is read too, and delivered as usual.
// A report is logged, counted and kept in the Inbox. Mail to Address
// that is no report is refused at the end of DATA when it has no other
// recipient.
type Step struct {
	decide.Nop
	Inbox   *Inbox
	Address string // our reporting address; "" takes reports to postmaster only
	Log     *slog.Logger
	Now     func() time.Time
}

// Rcpt takes RCPT to Address on the MX.
func (s *Step) Rcpt(_ context.Context, t *decide.Transaction, r *decide.Rcpt) error {
	if t.Session.Listener == "mx" && s.isAddress(r.Address) {
		t.Consume(r)
	}
	return nil
}

func (s *Step) isAddress(addr string) bool {
	if s.Address == "" {
		return false
	}
	a, err := mailaddr.Parse(addr)
	b, err2 := mailaddr.Parse(s.Address)
	return err == nil && err2 == nil && a.Canonical() == b.Canonical()
}

// Data reads the report of a message to Address, or of a tlsrpt report
// to postmaster.
func (s *Step) Data(_ context.Context, t *decide.Transaction, m *decide.Message) error {
	if t.Session.Listener != "mx" {
		return nil
	}
	toUs, toPostmaster := false, false
	for _, rcpt := range t.Rcpts {
		toUs = toUs || s.isAddress(rcpt)
		local, _, _ := strings.Cut(rcpt, "@")
		toPostmaster = toPostmaster || strings.EqualFold(local, "postmaster")
	}
	isReport := false
	for _, f := range m.Values("Content-Type") {
		isReport = isReport || IsReportType(f.Value)
	}
	if !toUs && !(toPostmaster && isReport) {
		return nil
	}
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rep, err := ParseMessage(m.Open())
	if err != nil {
		log.Info("mail to the TLS report address is no TLS report", "from", t.From, "err", err)
		if toUs && len(t.Recipients) == 0 {
			return reply.New(554, reply.Enhanced{5, 6, 0}, "Not a TLS report (RFC 8460): %s", oneLine(err.Error()))
		}
		return nil
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	r := Received{Received: now(), From: t.From, Report: *rep}
	if len(t.Recipients) == 0 {
		t.NoMessage = "TLS report received"
	}
	t.OnAccept(func() {
		sum := Summarize(r)
		receivedTotal.Inc()
		rcvdFailTotal.Add(uint64(sum.Failed))
		log.Info("TLS report received", "organization", sum.Organization, "report_id", sum.ReportID, "domains", sum.Domains,
			"start", sum.Start, "end", sum.End, "successful", sum.Successful, "failed", sum.Failed, "failures", sum.Failures)
		if s.Inbox != nil {
			if err := s.Inbox.Add(r); err != nil {
				log.Error("keeping a TLS report", "err", err)
			}
		}
	})
	return nil
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}
