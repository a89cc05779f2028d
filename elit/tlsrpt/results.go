package tlsrpt

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/renameio/v2"

	"elit.local/elit/deliver"
)

// Store counts the results of outbound TLS attempts for TLS reports, per
// UTC day (RFC 8460 §4.1: a report covers a day) and per report domain:
// the recipient domain for every result, and the MX host (the TLSA base
// domain) too for a DANE policy, which is reported to the host's own
// TLSRPT record as mox does. It is a deliver.TLSReporter.
//
// Results are kept in memory and written to one JSON file a day in its
// directory (Flush: the server calls it every minute and at the end): a crash loses
// at most the last minute's counts. It is bounded: MaxDomains report
// domains a day, MaxFailureDetails kinds of failure per policy (more
// are counted, not detailed), and days older than MaxDays are dropped.
type Store struct {
	dir string
	now func() time.Time
	log *slog.Logger

	mu    sync.Mutex
	days  map[string]*Day // by DayName
	dirty map[string]bool
}

// Bounds of a Store.
const (
	MaxDomains        = 10000
	MaxFailureDetails = 100
	MaxDays           = 7
	maxReasonLength   = 200
)

// Day is the results of one UTC day, by report domain, as the file
// keeps them.
type Day struct {
	Day     string                `json:"day"` // YYYYMMDD
	Domains map[string]*DomainDay `json:"domains"`
}

// DomainDay is what one report domain gets for a day.
type DomainDay struct {
	// Host is set for an MX host's report (its DANE results), unset for
	// a recipient domain's.
	Host    bool     `json:"host,omitempty"`
	Results []Result `json:"results"`
	// Sent is set once the report is sent (or nobody takes it).
	Sent bool `json:"sent,omitempty"`
}

// DayName is the name of t's UTC day.
func DayName(t time.Time) string { return t.UTC().Format("20060102") }

// OpenStore opens (making it) the results directory dir and reads the
// days kept there; now is the clock (nil: time.Now).
func OpenStore(dir string, now func() time.Time, log *slog.Logger) (*Store, error) {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("tls report results: %w", err)
	}
	s := &Store{dir: dir, now: now, log: log, days: map[string]*Day{}, dirty: map[string]bool{}}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("tls report results: %w", err)
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !strings.HasPrefix(name, "results-") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("tls report results: %w", err)
		}
		var d Day
		if err := json.Unmarshal(b, &d); err != nil || d.Day != strings.TrimPrefix(name, "results-") {
			log.Warn("tls report results: a damaged day file, left out", "file", e.Name(), "err", err)
			continue
		}
		if d.Domains == nil {
			d.Domains = map[string]*DomainDay{}
		}
		s.days[d.Day] = &d
	}
	s.mu.Lock()
	s.prune()
	s.mu.Unlock()
	return s, nil
}

func (s *Store) path(day string) string { return filepath.Join(s.dir, "results-"+day+".json") }

// prune drops the days older than MaxDays. s.mu is held.
func (s *Store) prune() {
	oldest := DayName(s.now().AddDate(0, 0, -MaxDays))
	for name := range s.days {
		if name < oldest {
			delete(s.days, name)
			delete(s.dirty, name)
			if err := os.Remove(s.path(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				s.log.Error("tls report results: removing an old day", "day", name, "err", err)
			}
			s.log.Info("tls report results: a day too old to report dropped", "day", name)
		}
	}
}

// ReportTLS implements deliver.TLSReporter: it counts one outcome.
func (s *Store) ReportTLS(o deliver.TLSOutcome) {
	pol, ok, fd := Classify(o)
	if !ok {
		return
	}
	if fd == nil {
		resultsTotal.Inc("success")
	} else {
		resultsTotal.Inc("failure")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	day := DayName(s.now())
	s.add(day, o.Domain, false, pol, fd)
	if pol.Type == PolicyTLSA && pol.Domain != o.Domain {
		s.add(day, pol.Domain, true, pol, fd)
	}
}

// add counts a session for a report domain. s.mu is held.
func (s *Store) add(day, domain string, host bool, pol Policy, fd *FailureDetail) {
	d := s.days[day]
	if d == nil {
		d = &Day{Day: day, Domains: map[string]*DomainDay{}}
		s.days[day] = d
		s.prune()
	}
	dd := d.Domains[domain]
	if dd == nil {
		if len(d.Domains) >= MaxDomains {
			return
		}
		dd = &DomainDay{Host: host}
		d.Domains[domain] = dd
	}
	s.dirty[day] = true
	i := slices.IndexFunc(dd.Results, func(r Result) bool { return samePolicy(r.Policy, pol) })
	if i < 0 {
		dd.Results = append(dd.Results, Result{Policy: pol})
		i = len(dd.Results) - 1
	}
	r := &dd.Results[i]
	if fd == nil {
		r.Summary.Successful++
		return
	}
	r.Summary.Failed++
	if j := slices.IndexFunc(r.FailureDetails, func(f FailureDetail) bool { return f.key() == fd.key() }); j >= 0 {
		r.FailureDetails[j].FailedSessionCount++
	} else if len(r.FailureDetails) < MaxFailureDetails {
		r.FailureDetails = append(r.FailureDetails, *fd)
	}
}

func samePolicy(a, b Policy) bool {
	return a.Type == b.Type && a.Domain == b.Domain && slices.Equal(a.String, b.String) && slices.Equal(a.MXHost, b.MXHost)
}

// Classify is what an outcome counts for in a TLS report (RFC 8460
// §4.3): the policy, whether it counts at all, and its failure (nil for
// a success). A report counts the sessions of the policy: the outcome of
// the plan's own requirement, success when met, a failure with its
// result type when not; what the plan allows after that (a testing
// MTA-STS policy's plaintext, the fallbacks of TLS-Required: No) is not
// counted again. Without a policy (no-policy-found) verification is not
// asked: a session is successful when it uses TLS, and fails as
// starttls-not-supported when the server offers no STARTTLS, or with
// the error of a TLS that could not be had at all. Relays and our own
// TLS reports are not counted.
func Classify(o deliver.TLSOutcome) (Policy, bool, *FailureDetail) {
	if o.Transport != "direct" || o.TLSReport || o.Domain == "" {
		return Policy{}, false, nil
	}
	pol := Policy{Type: o.Policy, Domain: o.PolicyDomain, String: o.PolicyStrings, MXHost: o.MXHosts}
	switch pol.Type {
	case PolicySTS, PolicyTLSA:
	case "":
		pol.Type = PolicyNotFound
		if strings.HasPrefix(o.Failure, "sts-") {
			pol.Type = PolicySTS
		} else if slices.Contains([]string{"tlsa-invalid", "dnssec-invalid", "dane-required"}, o.Failure) {
			pol.Type = PolicyTLSA
		}
	default:
		pol.Type = PolicyNotFound
	}
	if pol.Domain == "" || pol.Type == PolicyNotFound {
		pol.Domain = o.Domain
	}
	if pol.Type == PolicyNotFound {
		pol.String, pol.MXHost = nil, nil
	}
	fail := func(resultType string) (Policy, bool, *FailureDetail) {
		fd := &FailureDetail{ResultType: resultType, ReceivingMXHostname: o.Host, FailedSessionCount: 1}
		fd.SendingMTAIP, _, _ = net.SplitHostPort(o.LocalAddr)
		fd.ReceivingIP, _, _ = net.SplitHostPort(o.Addr)
		if o.Err != nil && resultType != "starttls-not-supported" {
			reason := strings.Join(strings.Fields(o.Err.Error()), " ")
			if len(reason) > maxReasonLength {
				reason = reason[:maxReasonLength]
			}
			fd.FailureReasonCode = reason
		}
		return pol, true, fd
	}
	if pol.Type == PolicyNotFound {
		switch {
		case o.Err == nil && o.Achieved != deliver.TLSNone:
			return pol, true, nil
		case o.Err == nil && !o.STARTTLS:
			return fail("starttls-not-supported")
		case o.Err == nil:
			return pol, false, nil // plaintext the plan chose, after a failure counted
		case o.Required.Mode == deliver.TLSVerified && !o.Required.Required:
			return pol, false, nil // verification not asked: the next requirement tells
		}
		return fail(o.Failure)
	}
	if o.Fallback {
		return pol, false, nil
	}
	if o.Err == nil {
		return pol, true, nil
	}
	return fail(o.Failure)
}

// Flush writes the days that changed since the last Flush.
func (s *Store) Flush() error {
	s.mu.Lock()
	var todo []*Day
	for name := range s.dirty {
		if d := s.days[name]; d != nil {
			b, _ := json.Marshal(d) // a copy, written outside the lock
			var c Day
			json.Unmarshal(b, &c)
			todo = append(todo, &c)
		}
	}
	clear(s.dirty)
	s.mu.Unlock()
	var errs []error
	for _, d := range todo {
		if err := s.write(d); err != nil {
			s.mu.Lock()
			s.dirty[d.Day] = true
			s.mu.Unlock()
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *Store) write(d *Day) error {
	b, err := json.MarshalIndent(d, "", " ")
	if err != nil {
		return err
	}
	if err := renameio.WriteFile(s.path(d.Day), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("tls report results: %w", err)
	}
	return nil
}

// Days returns the names of the days with results before day, oldest
// first: the days to report.
func (s *Store) Days(before string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for name := range s.days {
		if name < before {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// Pending returns the report domains of day not yet sent, sorted, and
// for each whether it is an MX host's.
func (s *Store) Pending(day string) (domains []string, host map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	host = map[string]bool{}
	if d := s.days[day]; d != nil {
		for name, dd := range d.Domains {
			if !dd.Sent {
				domains = append(domains, name)
				host[name] = dd.Host
			}
		}
	}
	sort.Strings(domains)
	return domains, host
}

// Results returns a copy of a report domain's results for day.
func (s *Store) Results(day, domain string) []Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.days[day]
	if d == nil || d.Domains[domain] == nil {
		return nil
	}
	b, _ := json.Marshal(d.Domains[domain].Results)
	var out []Result
	json.Unmarshal(b, &out)
	return out
}

// MarkSent records that domain's report for day is done; a day whose
// reports are all done is removed.
func (s *Store) MarkSent(day, domain string) error {
	s.mu.Lock()
	d := s.days[day]
	if d == nil || d.Domains[domain] == nil {
		s.mu.Unlock()
		return nil
	}
	d.Domains[domain].Sent = true
	done := true
	for _, dd := range d.Domains {
		done = done && dd.Sent
	}
	if done {
		delete(s.days, day)
		delete(s.dirty, day)
	} else {
		s.dirty[day] = true
	}
	s.mu.Unlock()
	if done {
		if err := os.Remove(s.path(day)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("tls report results: %w", err)
		}
		return nil
	}
	return s.Flush()
}
