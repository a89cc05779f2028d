package tlsrpt

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"elit.local/elit/dns"
	"elit.local/elit/queue"
)

// Sender sends the daily aggregate reports (RFC 8460 §4.1, §5): once a
// day has ended (UTC), each report domain's results go to the rua URIs
// of its TLSRPT record; a domain without one gets nothing. A report goes
// by mail through the queue (mailto, §5.3: DKIM-signed, with
// "TLS-Required: No" so that a broken TLS policy, the thing reported,
// does not stop it) and by HTTPS POST (https, §5.4). A domain whose
// record cannot be looked up now, or whose every URI failed, is tried
// again at the next round (hourly), until its day is MaxDays old.
type Sender struct {
	Store    *Store
	Resolver dns.Resolver
	// Domain is ours: the organization-name and TLS-Report-Submitter.
	Domain string
	// Hostname is ours, in report IDs and Message-IDs.
	Hostname string
	// From sends the reports by mail and is the contact-info.
	From string
	// Queue takes the report mail; Notify tells the deliverer of it.
	Queue  *queue.Store
	Notify func(*queue.Message)
	// Sign, when set, returns the header fields (a DKIM signature) to
	// put above a report mail.
	Sign func(msg []byte) (string, error)
	// HTTP posts to https URIs (nil: one with HTTPTimeout, the system's
	// roots, and no redirects followed).
	HTTP *http.Client
	Now  func() time.Time
	Log  *slog.Logger
}

// HTTPTimeout bounds an HTTPS POST of a report.
const HTTPTimeout = 30 * time.Second

func (s *Sender) defaults() {
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	if s.Notify == nil {
		s.Notify = func(*queue.Message) {}
	}
	if s.HTTP == nil {
		s.HTTP = &http.Client{Timeout: HTTPTimeout, CheckRedirect: noRedirects}
	}
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Run sends the reports of the days that ended, then again every hour,
// until ctx ends.
func (s *Sender) Run(ctx context.Context) {
	s.defaults()
	for {
		s.SendDue(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Hour):
		}
	}
}

// SendDue sends the reports of every day before today not yet sent.
func (s *Sender) SendDue(ctx context.Context) {
	s.defaults()
	for _, day := range s.Store.Days(DayName(s.Now())) {
		domains, host := s.Store.Pending(day)
		for _, domain := range domains {
			if ctx.Err() != nil {
				return
			}
			done, err := s.send(ctx, day, domain, host[domain])
			if err != nil {
				s.Log.Info("TLS report not sent; trying again later", "day", day, "domain", domain, "err", err)
			}
			if done {
				if err := s.Store.MarkSent(day, domain); err != nil {
					s.Log.Error("recording a TLS report sent", "err", err)
				}
			}
		}
	}
}

// send sends domain's report for day. done: nothing is left to do for it
// (sent to a URI at least, or the domain takes no reports).
func (s *Sender) send(ctx context.Context, day, domain string, host bool) (done bool, err error) {
	rec, err := Lookup(ctx, s.Resolver, domain)
	if errors.Is(err, ErrNoRecord) {
		s.Log.Debug("no TLSRPT record: no report", "day", day, "domain", domain)
		return true, nil
	}
	if err != nil {
		return !errors.Is(err, dns.ErrTemporary), err // a bad record takes no report
	}
	rep, err := s.Report(day, domain)
	if err != nil {
		return true, err
	}
	data, err := rep.Marshal()
	if err != nil {
		return true, err
	}
	gz := Gzip(data)
	var errs []error
	sent := 0
	for _, u := range rec.RUA {
		var err error
		switch u.Scheme {
		case "mailto":
			err = s.mail(u, domain, rep, gz)
		case "https":
			err = s.post(ctx, u, gz)
		default:
			continue
		}
		if err != nil {
			sendErrTotal.Inc()
			errs = append(errs, fmt.Errorf("%s: %w", u, err))
			continue
		}
		sentTotal.Inc(u.Scheme)
		sent++
		s.Log.Info("TLS report sent", "day", day, "domain", domain, "host", host, "to", u.String(), "report_id", rep.ReportID)
	}
	return sent > 0 || len(errs) == 0, errors.Join(errs...)
}

// Report is domain's report for day.
func (s *Sender) Report(day, domain string) (*Report, error) {
	start, err := time.Parse("20060102", day)
	if err != nil {
		return nil, fmt.Errorf("tls report: day %q: %w", day, err)
	}
	rnd := make([]byte, 6)
	rand.Read(rnd)
	return &Report{
		OrganizationName: s.Domain,
		DateRange:        DateRange{Start: start, End: start.Add(24*time.Hour - time.Second)},
		ContactInfo:      s.From,
		ReportID:         fmt.Sprintf("%s.%s.%s@%s", day, domain, hex.EncodeToString(rnd), s.Hostname),
		Policies:         s.Store.Results(day, domain),
	}, nil
}

// FileName is a report's file name (RFC 8460 §5.1): submitter!policy
// domain!begin!end!unique id.json.gz.
func FileName(submitter, domain string, r *Report) string {
	id := strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			return c
		}
		return -1
	}, r.ReportID)
	return fmt.Sprintf("%s!%s!%d!%d!%s.json.gz", submitter, domain, r.DateRange.Start.Unix(), r.DateRange.End.Unix(), id)
}

// Message writes the mail that carries a report (RFC 8460 §5.3):
// multipart/report; report-type="tlsrpt", a text part and the gzipped
// JSON as application/tlsrpt+gzip, the Subject and TLS-Report-Domain and
// TLS-Report-Submitter fields, and "TLS-Required: No" (RFC 8689 §3).
func Message(from, to, submitter, domain string, r *Report, gz []byte, now time.Time, hostname string) []byte {
	rnd := make([]byte, 12)
	rand.Read(rnd)
	boundary := "elit-tlsrpt-" + hex.EncodeToString(rnd)
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\r\n", args...) }
	w("From: <%s>", from)
	w("To: <%s>", to)
	w("Subject: Report Domain: %s Submitter: %s Report-ID: <%s>", domain, submitter, r.ReportID)
	w("Date: %s", now.Format(time.RFC1123Z))
	w("Message-ID: <%s@%s>", hex.EncodeToString(rnd[:9]), hostname)
	w("TLS-Report-Domain: %s", domain)
	w("TLS-Report-Submitter: %s", submitter)
	w("TLS-Required: No")
	w("Auto-Submitted: auto-generated")
	w("MIME-Version: 1.0")
	w("Content-Type: multipart/report; report-type=\"tlsrpt\";\r\n\tboundary=\"%s\"", boundary)
	w("")
	w("This is an aggregate TLS report (RFC 8460).")
	w("")
	w("--%s", boundary)
	w("Content-Type: text/plain; charset=us-ascii")
	w("")
	w("This is an aggregate TLS report from %s on the TLS connections made", submitter)
	w("to the mail servers of %s from %s to %s.", domain, r.DateRange.Start.Format(time.RFC3339), r.DateRange.End.Format(time.RFC3339))
	w("")
	w("--%s", boundary)
	w("Content-Type: application/tlsrpt+gzip")
	w("Content-Transfer-Encoding: base64")
	w("Content-Disposition: attachment;\r\n\tfilename=\"%s\"", FileName(submitter, domain, r))
	w("")
	enc := base64.StdEncoding.EncodeToString(gz)
	for len(enc) > 76 {
		w("%s", enc[:76])
		enc = enc[76:]
	}
	w("%s", enc)
	w("")
	w("--%s--", boundary)
	return b.Bytes()
}

// mail queues the report to a mailto URI.
func (s *Sender) mail(u *url.URL, domain string, r *Report, gz []byte) error {
	to, err := MailtoAddress(u)
	if err != nil {
		return err
	}
	data := Message(s.From, to, s.Domain, domain, r, gz, s.Now(), s.Hostname)
	m := &queue.Message{From: s.From, Recipients: []queue.Recipient{{Address: to}}, Body: "7BIT",
		TLSRequiredNo: true, TLSReport: true}
	if s.Sign != nil {
		h, err := s.Sign(data)
		if err != nil {
			s.Log.Error("cannot sign a TLS report", "err", err)
		}
		m.Header = h
	}
	if err := s.Queue.Put(m, bytes.NewReader(data)); err != nil {
		return fmt.Errorf("queueing: %w", err)
	}
	s.Notify(m)
	return nil
}

// post sends the report to an https URI (RFC 8460 §5.4): a POST of the
// gzipped JSON as application/tlsrpt+gzip over verified TLS; a 2xx
// answer is success.
func (s *Sender) post(ctx context.Context, u *url.URL, gz []byte) error {
	ctx, cancel := context.WithTimeout(ctx, HTTPTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(gz))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/tlsrpt+gzip")
	resp, err := s.HTTP.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	return nil
}
