package mtasts

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"elit.local/elit/dns"
	"elit.local/elit/internal/testlib"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// world is what a Cache sees: DNS in memory, policy hosts on a loopback
// HTTPS server, a clock the test moves, a log the test reads.
type world struct {
	dns   *dns.Mem
	ps    *policyServer
	site  *site
	dir   string
	logs  *testlib.Buffer
	mu    sync.Mutex
	clock time.Time
}

var start = time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)

func newWorld(t *testing.T) *world {
	t.Helper()
	ps := &policyServer{}
	var names []string
	for _, d := range []string{"example.com", "example.net", "example.org", "a.example", "b.example", "c.example"} {
		names = append(names, "mta-sts."+d)
	}
	return &world{
		dns:   &dns.Mem{TXTs: map[string][]string{}, Fail: map[string]error{}},
		ps:    ps,
		site:  newSite(t, ps, names...),
		dir:   filepath.Join(t.TempDir(), "mta-sts"),
		logs:  &testlib.Buffer{},
		clock: start,
	}
}

func (w *world) now() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.clock
}

func (w *world) advance(d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.clock = w.clock.Add(d)
}

func (w *world) open(t *testing.T, maxDomains int) *Cache {
	t.Helper()
	c, err := Open(Config{Dir: w.dir, Resolver: w.dns, Fetcher: w.site.fetcher, MaxDomains: maxDomains,
		Now: w.now, Log: slog.New(slog.NewTextHandler(w.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// publish sets domain's TXT record with id and the policy its host
// serves.
func (w *world) publish(domain, id, policy string) {
	w.dns.TXTs["_mta-sts."+domain] = []string{"v=STSv1; id=" + id + ";"}
	w.ps.set("mta-sts."+domain, policy)
}

// unpublish removes domain's TXT record (NXDOMAIN).
func (w *world) unpublish(domain string) { delete(w.dns.TXTs, "_mta-sts."+domain) }

func policyText(mode Mode, maxAge int, mx ...string) string {
	s := "version: STSv1\r\nmode: " + string(mode) + "\r\n"
	for _, m := range mx {
		s += "mx: " + m + "\r\n"
	}
	return s + fmt.Sprintf("max_age: %d\r\n", maxAge)
}

func (w *world) fileExists(domain string) bool {
	_, err := os.Stat(filepath.Join(w.dir, domain+".json"))
	return err == nil
}

// check compares a Result with what is expected: the mode, the id, the
// failure, whether Err is set.
func check(t *testing.T, what string, r Result, mode Mode, id, failure string, hasErr bool) {
	t.Helper()
	if r.Mode() != mode || r.ID != id || r.Failure != failure || (r.Err != nil) != hasErr {
		t.Errorf("%s: mode %q id %q failure %q err %v; want mode %q id %q failure %q err %v",
			what, r.Mode(), r.ID, r.Failure, r.Err, mode, id, failure, hasErr)
	}
}

// TestCacheFile: a policy fetched once is kept, in a file a person can
// read (testdata/example.com.json.golden), and used without fetching
// again while the TXT record's id stays the same.
func TestCacheFile(t *testing.T) {
	w := newWorld(t)
	w.publish("example.com", "20160831085700Z", goodPolicy)
	c := w.open(t, 0)
	ctx := context.Background()

	r := c.Policy(ctx, "Example.COM.")
	check(t, "first", r, Enforce, "20160831085700Z", "", false)
	if r.Domain != "example.com" || !r.Fetched.Equal(start) || !r.Expires.Equal(start.Add(24*time.Hour)) ||
		!reflect.DeepEqual(r.Lines, []string{"version: STSv1", "mode: enforce", "mx: mx.example.com", "mx: *.mx.example.net", "max_age: 86400"}) ||
		!reflect.DeepEqual(r.MXPatterns(), []string{"mx.example.com", "*.mx.example.net"}) {
		t.Errorf("first: %+v", r)
	}
	got, err := os.ReadFile(filepath.Join(w.dir, "example.com.json"))
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "example.com.json.golden")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("file:\n%s\nwant (%s):\n%s", got, golden, want)
	}

	for _, d := range []time.Duration{time.Second, time.Hour, 22 * time.Hour} {
		w.advance(d)
		check(t, "later", c.Policy(ctx, "example.com"), Enforce, "20160831085700Z", "", false)
	}
	if n := w.ps.count(); n != 1 {
		t.Errorf("%d fetches, want 1", n)
	}
	if !c.Policy(ctx, "example.com").Match("a.mx.example.net") {
		t.Error("the cached policy does not match its own mx")
	}
}

// TestCacheReopen: the policies kept survive a restart; damaged,
// expired and half-written files do not.
func TestCacheReopen(t *testing.T) {
	w := newWorld(t)
	w.publish("example.com", "id1", goodPolicy)
	w.publish("example.net", "id2", policyText(Testing, 3600, "mx.example.net"))
	c := w.open(t, 0)
	ctx := context.Background()
	check(t, "example.com", c.Policy(ctx, "example.com"), Enforce, "id1", "", false)
	check(t, "example.net", c.Policy(ctx, "example.net"), Testing, "id2", "", false)

	for name, content := range map[string]string{
		"broken.example.json":          "{not json",
		"wrong.example.json":           `{"domain": "other.example", "id": "x", "policy": ["version: STSv1", "mode: none", "max_age: 1"]}`,
		"invalid.example.json":         `{"domain": "invalid.example", "id": "x", "fetched": "2026-05-01T10:00:00Z", "expires": "2026-05-02T10:00:00Z", "policy": ["version: STSv1", "mode: enforce", "max_age: 86400"]}`,
		"long.example.json":            `{"domain": "long.example", "id": "x", "fetched": "2026-05-01T10:00:00Z", "expires": "2027-05-02T10:00:00Z", "policy": ["version: STSv1", "mode: none", "max_age: 86400"]}`,
		".example.com.json1234567":     "half written",
		"README":                       "not ours, left alone",
		"example.org.json.interrupted": "not ours either",
	} {
		if err := os.WriteFile(filepath.Join(w.dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	w.advance(2 * time.Hour) // example.net's policy (max_age 3600) has expired
	c2 := w.open(t, 0)
	if got := c2.Domains(); !reflect.DeepEqual(got, []string{"example.com"}) {
		t.Errorf("reopened: %q, want example.com", got)
	}
	ents, _ := os.ReadDir(w.dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if want := []string{"README", "example.com.json", "example.org.json.interrupted"}; !reflect.DeepEqual(names, want) {
		t.Errorf("files after reopening: %q, want %q", names, want)
	}
	check(t, "reopened", c2.Policy(ctx, "example.com"), Enforce, "id1", "", false)
	if n := w.ps.count(); n != 2 {
		t.Errorf("%d fetches, want 2 (none after reopening)", n)
	}
	if !strings.Contains(w.logs.String(), "broken.example.json") {
		t.Errorf("the removal of a damaged file is not logged:\n%s", w.logs)
	}
}

// TestCacheNewID: a TXT record with another id makes the policy fetched
// again (§3.1, §5.1), at the latest a minute later.
func TestCacheNewID(t *testing.T) {
	w := newWorld(t)
	w.publish("example.com", "id1", goodPolicy)
	c := w.open(t, 0)
	ctx := context.Background()
	check(t, "first", c.Policy(ctx, "example.com"), Enforce, "id1", "", false)

	w.publish("example.com", "id2", policyText(Testing, 604800, "mx2.example.com"))
	w.advance(recheck)
	r := c.Policy(ctx, "example.com")
	check(t, "new id", r, Testing, "id2", "", false)
	if !r.Match("mx2.example.com") || r.Match("mx.example.com") || !r.Expires.Equal(w.now().Add(7*24*time.Hour)) {
		t.Errorf("new policy: %+v", r)
	}
	if n := w.ps.count(); n != 2 {
		t.Errorf("%d fetches, want 2", n)
	}
	b, _ := os.ReadFile(filepath.Join(w.dir, "example.com.json"))
	if !strings.Contains(string(b), `"id": "id2"`) || !strings.Contains(string(b), `"mode: testing"`) {
		t.Errorf("file not updated:\n%s", b)
	}
}

// TestCacheFetchFailure: a failed fetch of a new policy keeps the cached
// one in force (§3.3), with the failure's report type; the same id is
// not fetched again for five minutes; without a cached policy there is
// none.
func TestCacheFetchFailure(t *testing.T) {
	w := newWorld(t)
	w.publish("example.com", "id1", goodPolicy)
	c := w.open(t, 0)
	ctx := context.Background()
	check(t, "first", c.Policy(ctx, "example.com"), Enforce, "id1", "", false)

	w.publish("example.com", "id2", policyText(Testing, 86400, "mx.example.com"))
	w.ps.setStatus(http.StatusServiceUnavailable)
	w.advance(recheck)
	r := c.Policy(ctx, "example.com")
	check(t, "failed fetch", r, Enforce, "id1", "sts-policy-fetch-error", true)
	if !errors.Is(r.Err, errFetch) {
		t.Errorf("Err %v does not wrap errFetch", r.Err)
	}
	w.advance(recheck)
	check(t, "within the back-off", c.Policy(ctx, "example.com"), Enforce, "id1", "sts-policy-fetch-error", true)
	if n := w.ps.count(); n != 2 {
		t.Errorf("%d fetches, want 2 (none within the back-off)", n)
	}
	w.advance(backoff)
	check(t, "after the back-off", c.Policy(ctx, "example.com"), Enforce, "id1", "sts-policy-fetch-error", true)
	if n := w.ps.count(); n != 3 {
		t.Errorf("%d fetches, want 3", n)
	}
	w.ps.setStatus(0)
	w.advance(backoff)
	check(t, "fixed", c.Policy(ctx, "example.com"), Testing, "id2", "", false)

	// An invalid policy and no cached one: no policy, reported as
	// sts-policy-invalid.
	w.publish("example.net", "n1", "version: STSv1\r\nmode: enforce\r\nmax_age: 86400\r\n")
	check(t, "invalid", c.Policy(ctx, "example.net"), None, "", "sts-policy-invalid", true)
	if w.fileExists("example.net") {
		t.Error("an invalid policy was kept")
	}
	// A policy host with a certificate for other names.
	w.publish("other.example", "o1", goodPolicy)
	check(t, "bad certificate", c.Policy(ctx, "other.example"), None, "", "sts-webpki-invalid", true)
}

// TestCacheExpiry: a policy is used for max_age after its fetch, not
// longer, even when nothing newer can be had.
func TestCacheExpiry(t *testing.T) {
	w := newWorld(t)
	w.publish("example.com", "id1", policyText(Enforce, 3600, "mx.example.com"))
	c := w.open(t, 0)
	ctx := context.Background()
	check(t, "first", c.Policy(ctx, "example.com"), Enforce, "id1", "", false)

	w.ps.setStatus(http.StatusInternalServerError)
	w.advance(3599 * time.Second)
	check(t, "just before", c.Policy(ctx, "example.com"), Enforce, "id1", "", false)
	w.advance(time.Second)
	check(t, "expired, the host failing", c.Policy(ctx, "example.com"), None, "", "sts-policy-fetch-error", true)
	if got := c.Domains(); len(got) != 0 {
		t.Errorf("Domains = %q after expiry", got)
	}
	c.Refresh(ctx)
	if w.fileExists("example.com") {
		t.Error("the expired policy's file is still there after Refresh")
	}
	w.ps.setStatus(0)
	w.advance(backoff)
	check(t, "fetched again", c.Policy(ctx, "example.com"), Enforce, "id1", "", false)

	// max_age 0: used once, never kept.
	w.publish("example.net", "z", policyText(Enforce, 0, "mx.example.net"))
	check(t, "max_age 0", c.Policy(ctx, "example.net"), Enforce, "z", "", false)
	if w.fileExists("example.net") {
		t.Error("a policy with max_age 0 was kept")
	}
	check(t, "max_age 0 again", c.Policy(ctx, "example.net"), Enforce, "z", "", false)
	if n := w.ps.count(); n != 5 {
		t.Errorf("%d fetches, want 5", n)
	}
}

// TestCacheRecordGone: the absence of a TXT record does not remove a
// cached policy (§3.1), unless its mode is none (issue 13); a failed
// lookup changes nothing.
func TestCacheRecordGone(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.publish("example.com", "id1", goodPolicy)
	w.publish("example.net", "n1", policyText(None, 86400))
	w.publish("example.org", "o1", policyText(None, 86400))
	c := w.open(t, 0)
	check(t, "enforce", c.Policy(ctx, "example.com"), Enforce, "id1", "", false)
	check(t, "none", c.Policy(ctx, "example.net"), None, "n1", "", false)
	check(t, "none", c.Policy(ctx, "example.org"), None, "o1", "", false)
	if !w.fileExists("example.net") {
		t.Fatal("a policy in mode none was not kept")
	}
	if d := c.Policy(ctx, "example.net").Decide("anything.example"); d != (Decision{}) {
		t.Errorf("mode none decides %+v", d)
	}

	// The TXT lookups fail: everything stays.
	w.dns.Fail["_mta-sts.example.com"] = errors.New("SERVFAIL")
	w.dns.Fail["_mta-sts.example.net"] = errors.New("SERVFAIL")
	w.advance(recheck)
	r := c.Policy(ctx, "example.com")
	check(t, "lookup failed", r, Enforce, "id1", "", true)
	if !errors.Is(r.Err, dns.ErrTemporary) {
		t.Errorf("Err %v does not wrap dns.ErrTemporary", r.Err)
	}
	check(t, "lookup failed, none", c.Policy(ctx, "example.net"), None, "n1", "", true)
	clear(w.dns.Fail)

	// The records are gone.
	w.unpublish("example.com")
	w.unpublish("example.net")
	w.dns.TXTs["_mta-sts.example.org"] = []string{"v=spf1 -all"} // no MTA-STS record among them
	w.advance(recheck)
	r = c.Policy(ctx, "example.com")
	check(t, "record gone, enforce", r, Enforce, "id1", "", true)
	if !errors.Is(r.Err, ErrNoRecord) {
		t.Errorf("Err %v does not wrap ErrNoRecord", r.Err)
	}
	check(t, "record gone, none", c.Policy(ctx, "example.net"), None, "", "", true)
	check(t, "record gone, none", c.Policy(ctx, "example.org"), None, "", "", true)
	if w.fileExists("example.net") || w.fileExists("example.org") || !w.fileExists("example.com") {
		t.Errorf("files: %q", c.Domains())
	}
	if got := c.Domains(); !reflect.DeepEqual(got, []string{"example.com"}) {
		t.Errorf("Domains = %q", got)
	}
	if n := w.ps.count(); n != 3 {
		t.Errorf("%d fetches, want 3", n)
	}
}

// TestCacheNoPolicy: no record, no fetch, no policy; a failed lookup
// without a cached policy is no policy either (the package documentation
// says why).
func TestCacheNoPolicy(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.dns.TXTs["plain.example"] = []string{"v=spf1 -all"}
	w.dns.TXTs["_mta-sts.two.example"] = []string{"v=STSv1; id=a", "v=STSv1; id=b"}
	w.dns.TXTs["_mta-sts.bad.example"] = []string{"v=STSv1; id=a b"}
	w.dns.Fail["_mta-sts.fail.example"] = errors.New("timeout")
	c := w.open(t, 0)
	for _, d := range []string{"plain.example", "nxdomain.example", "two.example", "bad.example"} {
		r := c.Policy(ctx, d)
		check(t, d, r, None, "", "", true)
		if !errors.Is(r.Err, ErrNoRecord) {
			t.Errorf("%s: Err %v does not wrap ErrNoRecord", d, r.Err)
		}
	}
	r := c.Policy(ctx, "fail.example")
	check(t, "fail.example", r, None, "", "", true)
	if !errors.Is(r.Err, dns.ErrTemporary) {
		t.Errorf("Err %v does not wrap dns.ErrTemporary", r.Err)
	}
	check(t, "not a domain", c.Policy(ctx, "[192.0.2.1]"), None, "", "", true)
	if n := w.ps.count(); n != 0 {
		t.Errorf("%d fetches, want none", n)
	}
}

// TestCacheRefresh: Refresh fetches again the policies in use a day
// after their fetch, keeps them when that fails (and says so), does not
// fetch when the TXT record is gone, removes a mode none policy whose
// record is gone, and leaves alone the policies not used for 180 days.
func TestCacheRefresh(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.publish("example.com", "id1", policyText(Enforce, 604800, "mx.example.com"))
	w.publish("example.org", "o1", policyText(None, 604800))
	c := w.open(t, 0)
	c.Policy(ctx, "example.com")
	c.Policy(ctx, "example.org")
	fetches := func(want int) {
		t.Helper()
		if n := w.ps.count(); n != want {
			t.Errorf("%d fetches, want %d", n, want)
		}
	}
	fetches(2)
	for range 23 { // Run looks every hour
		w.advance(time.Hour)
		c.Refresh(ctx)
	}
	fetches(2) // nothing due yet
	w.advance(time.Hour)
	c.Refresh(ctx) // both due; the ids are the same: fetched all the same
	fetches(4)
	if r := c.Policy(ctx, "example.com"); !r.Fetched.Equal(w.now()) || !r.Expires.Equal(w.now().Add(7*24*time.Hour)) {
		t.Errorf("example.com after the refresh: fetched %v expires %v", r.Fetched, r.Expires)
	}

	// A failing host: the policy stays, a warning is logged; mode none
	// fails quietly.
	w.ps.setStatus(http.StatusBadGateway)
	w.advance(24 * time.Hour)
	c.Refresh(ctx)
	fetches(6)
	check(t, "after a failed refresh", c.Policy(ctx, "example.com"), Enforce, "id1", "", false)
	logs := w.logs.String()
	if !strings.Contains(logs, `level=WARN msg="mta-sts: cannot refresh a policy`) || !strings.Contains(logs, "domain=example.com") {
		t.Errorf("no warning for the failed refresh:\n%s", logs)
	}
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "domain=example.org") && strings.Contains(line, "WARN") {
			t.Errorf("a warning for a policy in mode none: %s", line)
		}
	}
	w.ps.setStatus(0)

	// The records are gone: nothing fetched; none removed, enforce kept.
	w.unpublish("example.com")
	w.unpublish("example.org")
	w.advance(24 * time.Hour)
	c.Refresh(ctx)
	fetches(6)
	if w.fileExists("example.org") || !w.fileExists("example.com") {
		t.Errorf("after the records went: %q", c.Domains())
	}
	check(t, "record gone", c.Policy(ctx, "example.com"), Enforce, "id1", "", true)

	// Unused for 180 days: no longer refreshed (and so left to expire).
	w.publish("example.com", "id1", policyText(Enforce, int(MaxMaxAge/time.Second), "mx.example.com"))
	w.advance(recheck)
	c.Policy(ctx, "example.com") // fetched (it expires in a year), and used
	n := w.ps.count()
	for range 181 {
		w.advance(24 * time.Hour)
		c.Refresh(ctx)
	}
	if got := w.ps.count() - n; got != 180 {
		t.Errorf("%d refreshes of an unused policy in 181 days, want 180", got)
	}
}

// TestCacheRefreshShortMaxAge: a policy whose max_age is under two days
// is refreshed at half of it, before it expires.
func TestCacheRefreshShortMaxAge(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.publish("example.net", "n1", policyText(Testing, 7200, "mx.example.net"))
	c := w.open(t, 0)
	c.Policy(ctx, "example.net")
	for range 10 {
		w.advance(time.Hour)
		c.Refresh(ctx)
	}
	if n := w.ps.count(); n != 11 {
		t.Errorf("%d fetches, want 11 (one an hour)", n)
	}
	if r := c.Policy(ctx, "example.net"); !r.Fetched.Equal(w.now()) || !r.Expires.Equal(w.now().Add(2*time.Hour)) {
		t.Errorf("after the refreshes: fetched %v expires %v", r.Fetched, r.Expires)
	}
}

// TestCacheRun: Run refreshes at once, then stops when its context ends.
func TestCacheRun(t *testing.T) {
	w := newWorld(t)
	w.publish("example.com", "id1", policyText(Enforce, 604800, "mx.example.com"))
	c := w.open(t, 0)
	c.Policy(context.Background(), "example.com")
	w.advance(25 * time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		c.Run(ctx)
		close(done)
	}()
	for deadline := time.Now().Add(time.Minute); w.ps.count() < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Run did not refresh the policy")
		}
	}
	cancel()
	<-done
}

// TestCacheBound: no more than MaxDomains policies are kept; the one
// unused for the longest time goes first.
func TestCacheBound(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	for _, d := range []string{"a.example", "b.example", "c.example"} {
		w.publish(d, "x", policyText(Enforce, 86400, "mx."+d))
	}
	c := w.open(t, 2)
	c.Policy(ctx, "a.example")
	w.advance(time.Second)
	c.Policy(ctx, "b.example")
	w.advance(time.Second)
	c.Policy(ctx, "a.example") // a is used again: b is the oldest
	w.advance(time.Second)
	c.Policy(ctx, "c.example")
	if got := c.Domains(); !reflect.DeepEqual(got, []string{"a.example", "c.example"}) {
		t.Errorf("Domains = %q, want a and c", got)
	}
	if w.fileExists("b.example") {
		t.Error("the evicted policy's file is still there")
	}
	// Reopened with a smaller bound.
	c1 := w.open(t, 1)
	if got := c1.Domains(); len(got) != 1 {
		t.Errorf("reopened with MaxDomains 1: %q", got)
	}
}

// TestCacheConcurrent: many deliveries asking at once for a domain's
// first policy make one fetch.
func TestCacheConcurrent(t *testing.T) {
	w := newWorld(t)
	w.publish("example.com", "id1", goodPolicy)
	c := w.open(t, 0)
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := c.Policy(context.Background(), "example.com"); r.Mode() != Enforce {
				t.Errorf("got %+v", r)
			}
		}()
	}
	wg.Wait()
	if n := w.ps.count(); n != 1 {
		t.Errorf("%d fetches, want 1", n)
	}
}

// TestCacheWaiterGivesUp: a delivery waiting for another's fetch of the
// same policy stops waiting when its context ends; the fetch goes on
// and is kept.
func TestCacheWaiterGivesUp(t *testing.T) {
	w := newWorld(t)
	w.dns.TXTs["_mta-sts.example.com"] = []string{"v=STSv1; id=slow"}
	arrived, release := make(chan struct{}), make(chan struct{})
	slow := newSite(t, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		rw.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(rw, goodPolicy)
	}), "mta-sts.example.com")
	c, err := Open(Config{Dir: w.dir, Resolver: w.dns, Fetcher: slow.fetcher, Now: w.now})
	if err != nil {
		t.Fatal(err)
	}
	first := make(chan Result)
	go func() { first <- c.Policy(context.Background(), "example.com") }()
	<-arrived
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := c.Policy(ctx, "example.com")
	check(t, "the waiter", r, None, "", "sts-policy-fetch-error", true)
	if !errors.Is(r.Err, context.Canceled) {
		t.Errorf("Err %v does not wrap context.Canceled", r.Err)
	}
	close(release)
	check(t, "the fetcher", <-first, Enforce, "slow", "", false)
	check(t, "afterwards", c.Policy(context.Background(), "example.com"), Enforce, "slow", "", false)
}
