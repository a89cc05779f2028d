package status

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"elit.local/elit/certs"
	"elit.local/elit/deliver"
	"elit.local/elit/dns"
	"elit.local/elit/dns/dnstest"
	"elit.local/elit/lists"
	"elit.local/elit/mailauth"
	"elit.local/elit/maillog"
	"elit.local/elit/metrics"
	"elit.local/elit/queue"
	"elit.local/elit/records"
	"elit.local/elit/userdb"
)

// chromium is Debian's browser, which make test installs.
const chromium = "/usr/bin/chromium"

// fullQueue is the queue of the browser test: the figure.
const fullQueue = 20_000

// fillQueue queues n messages (from 32 goroutines, so that the queue's
// group commit shares the syncs) as a busy relay's queue looks: one to
// three recipients, retries behind them with their errors, some held.
func fillQueue(t testing.TB, q *queue.Store, n int, now time.Time) {
	t.Helper()
	errs := []string{
		"4.4.1 connect to mx.example.net:25: connection refused",
		"451 4.7.1 Greylisted, please try again later (RCPT)",
		"4.4.3 no MX or address for example.invalid: DNS temporary failure",
		"421 4.3.2 Service shutting down, try again later (greeting)",
	}
	work := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range 32 {
		wg.Go(func() {
			for i := range work {
				m := &queue.Message{From: fmt.Sprintf("user%d@example.org", i%97), Received: now.Add(-time.Duration(i) * 17 * time.Second)}
				for j := range 1 + i%3 {
					r := queue.Recipient{Address: fmt.Sprintf("rcpt%d.%d@dest%d.example.net", i, j, i%13), Attempts: i % 7,
						NextAttempt: now.Add(time.Duration(1+i%50) * time.Minute)}
					if r.Attempts > 0 {
						r.LastError = errs[i%len(errs)]
					}
					if i%41 == 0 {
						r.Status = queue.Held
					}
					m.Recipients = append(m.Recipients, r)
				}
				in, err := q.Begin()
				if err == nil {
					in.Write([]byte("Subject: test\r\n\r\nhello\r\n"))
					err = q.Commit(in, m)
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
}

// testServer is a status page over a queue in a temporary directory,
// with the deliverer's operator commands (not running deliveries), a
// user database and a loopback DNS that lacks the DMARC record.
func testServer(t testing.TB, q *queue.Store) *Server {
	t.Helper()
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	d, err := deliver.New(deliver.Config{Queue: q, Hostname: "mx.example.org", Resolver: &dns.Mem{}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	sec, err := userdb.Hash("pw", false)
	if err != nil {
		t.Fatal(err)
	}
	db := fmt.Sprintf(`[{"name":"din","password":%q,"scram-sha-256":%q,"mailboxes":["din@example.net"]},
		{"name":"team","mailboxes":["din@example.net","kim@example.com"]},
		{"name":"kim","password":%q,"mailboxes":["kim@example.com"]}]`, sec.Password, sec.ScramSHA256, sec.Password)
	if err := os.WriteFile(filepath.Join(dir, "users.json"), []byte(db), 0o600); err != nil {
		t.Fatal(err)
	}
	loader := userdb.NewLoader(filepath.Join(dir, "users.json"), "", log, "example.org", nil)
	if err := loader.Load(); err != nil {
		t.Fatal(err)
	}
	bounces, err := lists.Open(filepath.Join(dir, "bounces"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bounces.Close() })
	bounces.Record("team@example.org", "kim@example.com", "550 5.1.1 no such user", time.Now())
	zone := dnstest.Serve(t, dnstest.Zone{Records: []string{
		"example.org. 300 IN MX 10 mx.example.org.",
		"mx.example.org. 300 IN A 192.0.2.25",
		`example.org. 300 IN TXT "v=spf1 mx -all"`,
		`example.org. 300 IN TXT "google-site-verification=abc"`,
		"_submissions._tcp.example.org. 300 IN SRV 0 1 465 mx.example.org.",
		"_submission._tcp.example.org. 300 IN SRV 0 1 587 mail.example.com.",
	}})
	// Two days of traffic, and the mail log of a few messages.
	clock := time.Now().Add(-(metrics.TrafficHours - 1) * time.Hour)
	traffic := metrics.NewHourly(func() time.Time { return clock })
	for h := range metrics.TrafficHours {
		day := 40 + 30*((h/6)%2) // busier in some hours
		traffic.Add(metrics.Received, uint64(day+h%5*3))
		traffic.Add(metrics.Delivered, uint64(day+h%4*2))
		traffic.Add(metrics.Deferred, uint64(3+h%7))
		traffic.Add(metrics.Bounced, uint64(h%3))
		clock = clock.Add(time.Hour)
	}
	clock = time.Now()
	mailLog := maillog.New(100)
	ml := slog.New(mailLog.Tee(slog.DiscardHandler))
	for i := range 20 {
		id := fmt.Sprintf("20261201T0900%02d-00000000000%d", i, i%10)
		ml.Info("queued", "id", id, "from", "din@example.org", "recipients", 1, "size", 2048)
		ml.With("id", id, "to", fmt.Sprintf("r%d@example.net", i)).Info("delivered", "host", "mx.example.net", "reply", "250 2.0.0 Ok")
	}
	ml.With("id", "20261201T091000-0000000000aa", "to", "x@example.com").Warn("delivery failed", "err", "550 5.1.1 no such user")
	return &Server{Version: "test", Domain: "example.org", Hostname: "mx.example.org", DBSource: "users.json",
		Queue: q, Loader: loader, Password: "s3cret", Started: time.Now().Add(-3 * time.Hour),
		Records: func(keys []mailauth.Key, tlsa string) []records.Record {
			return records.List(records.Input{Domain: "example.org", Hostname: "mx.example.org", Keys: keys, TLSA: tlsa})
		},
		Control: d.Do, Resolver: &dns.Client{Server: zone, Timeout: time.Second}, ListBounces: bounces.Read,
		Traffic: traffic, MailLog: mailLog,
		Cert: func() certs.Info {
			return certs.Info{Source: "acme", Names: []string{"mx.example.org", "mta-sts.example.org"}, Issuer: "CN=R11,O=Let's Encrypt,C=US",
				NotAfter: time.Now().Add(61 * 24 * time.Hour)}
		},
		Log: log}
}

// browser starts Debian's chromium, headless, on a fresh profile, sending
// the page's password with every request.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("%s: %v (make test installs Debian's chromium)", chromium, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	ctx, cancel = context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(cancel)
	// A drop asks first (window.confirm): the person says yes.
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("gokrazy:s3cret"))
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": auth}}); err != nil {
		t.Fatal(err)
	}
	return ctx
}

// loadPage opens url in the browser and waits for the page to be
// loaded, and returns how long that took.
func loadPage(ctx context.Context, url string) (time.Duration, error) {
	start := time.Now()
	err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitReady("body > main"))
	return time.Since(start), err
}

// TestPageInBrowser: the operator's page as a person uses it, in
// Debian's chromium driven over the DevTools protocol (chromedp): it
// loads with a full queue (the time it takes is logged, and printed for
// make bench with ELIT_PAGE_BENCH=1), "retry" makes a message due now,
// "drop" takes one out of the queue, the DNS check marks the record the
// loopback DNS lacks as missing, and an action without the page's CSRF
// token is refused. With ELIT_SCREENSHOTS=DIR the page is saved as
// DIR/page-queue.png and DIR/page-empty.png (the README's).
func TestPageInBrowser(t *testing.T) {
	q, err := queue.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	fillQueue(t, q, fullQueue, time.Now())
	t.Logf("%d messages queued in %v", fullQueue, time.Since(start).Round(time.Millisecond))
	s := testServer(t, q)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	ctx := browser(t)

	// The full queue: loaded three times (the first warms the caches).
	var loads []time.Duration
	for range 3 {
		d, err := loadPage(ctx, srv.URL+"/")
		if err != nil {
			t.Fatal(err)
		}
		loads = append(loads, d)
	}
	t.Logf("page load with %d queued messages: %v", fullQueue, loads)
	if os.Getenv("ELIT_PAGE_BENCH") != "" {
		fmt.Printf("PAGELOAD messages=%d first_ms=%d ms=%d ms=%d\n", fullQueue, loads[0].Milliseconds(), loads[1].Milliseconds(), loads[2].Milliseconds())
	}
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#queue-form tbody tr").length`))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('#queue-form tbody input[name="id"]')).map(e => e.value)`))
	if err != nil || len(ids) < 2 {
		t.Fatalf("the ids of the table: %q, %v", ids, err)
	}
	first, second := ids[0], ids[1]
	if rows != PageSize {
		t.Errorf("%d rows on the first page, want %d", rows, PageSize)
	}
	if dir := os.Getenv("ELIT_SCREENSHOTS"); dir != "" {
		screenshot(t, ctx, filepath.Join(dir, "page-queue.png"), false)
	}

	// Retry now: the message is due at once.
	before, err := q.Get(first)
	if err != nil {
		t.Fatal(err)
	}
	if next, _ := nextAttempt(before); !next.After(time.Now()) {
		t.Fatalf("%s is due already (%v): the test cannot see a retry", first, next)
	}
	if err := chromedp.Do(ctx,
		forgetResult,
		chromedp.Click(fmt.Sprintf(`button[name="do"][value="retry %s"]`, first)),
		chromedp.WaitVisible("#result"),
	); err != nil {
		t.Fatal(err)
	}
	result, err := chromedp.Run(ctx, chromedp.Text("#result"))
	if err != nil {
		t.Fatal(err)
	}
	after, err := q.Get(first)
	if err != nil {
		t.Fatal(err)
	}
	if next, ok := nextAttempt(after); !ok || !next.IsZero() {
		t.Errorf("after retry, %s is next tried at %v, want now (zero)", first, next)
	}
	if !strings.Contains(result, "1 message retried") {
		t.Errorf("after retry the page says %q", result)
	}
	nextText, err := chromedp.Run(ctx, chromedp.Text(fmt.Sprintf(`#m-%s td.next`, first)))
	if err != nil {
		t.Fatal(err)
	}
	if nextText != "now" {
		t.Errorf("after retry the next attempt of %s shows %q, want now", first, nextText)
	}

	// Drop (the sender told): the message leaves the queue and the page.
	if err := chromedp.Do(ctx,
		forgetResult,
		chromedp.Click(fmt.Sprintf(`button[name="do"][value="drop %s"]`, second)),
		chromedp.WaitVisible("#result"),
	); err != nil {
		t.Fatal(err)
	}
	if result, err = chromedp.Run(ctx, chromedp.Text("#result")); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Get(second); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("after drop, %s: %v, want gone", second, err)
	}
	if !strings.Contains(result, "1 message dropped") {
		t.Errorf("after drop the page says %q", result)
	}
	still, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(`document.getElementById("m-%s") !== null`, second)))
	if err != nil {
		t.Fatal(err)
	}
	if still {
		t.Errorf("the dropped message %s is still on the page", second)
	}

	// The DNS check: the loopback DNS has no DMARC record, and the wrong
	// submission SRV target.
	missing, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#dns tr.dns-missing code")).map(e => e.textContent)`))
	if err != nil {
		t.Fatal(err)
	}
	wrong, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#dns tr.dns-wrong td:nth-child(2) code")).map(e => e.textContent)`))
	if err != nil {
		t.Fatal(err)
	}
	if !containsPrefix(missing, "_dmarc.example.org. TXT ") {
		t.Errorf("the DNS check does not mark DMARC missing: missing %q", missing)
	}
	if !containsPrefix(wrong, "_submission._tcp.example.org. SRV 0 1 587 mx.example.org.") {
		t.Errorf("the DNS check does not mark the submission SRV wrong: wrong %q", wrong)
	}

	// The mail log, filtered by queue ID.
	if _, err := loadPage(ctx, srv.URL+"/?log=20261201T091000-0000000000aa#log"); err != nil {
		t.Fatal(err)
	}
	logText, err := chromedp.Run(ctx, chromedp.Text("pre.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logText, "delivery failed id=20261201T091000-0000000000aa") || strings.Contains(logText, "queued") {
		t.Errorf("the log filtered by queue ID shows:\n%s", logText)
	}
	chart, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelector("#traffic img").naturalWidth`))
	if err != nil || chart == 0 {
		t.Errorf("the traffic chart did not load: width %d, %v", chart, err)
	}

	// An action without the page's token, or with another's, or from
	// another site, is refused; the message stays as it was.
	held := func(id string) bool {
		m, err := q.Get(id)
		return err == nil && m.Recipients[0].Status == queue.Held
	}
	for _, c := range []struct {
		name   string
		form   url.Values
		header map[string]string
	}{
		{"no token", url.Values{"do": {"hold " + first}}, nil},
		{"wrong token", url.Values{"do": {"hold " + first}, "csrf": {"AAAA"}}, nil},
		{"other site", url.Values{"do": {"hold " + first}, "csrf": {s.csrfToken("gokrazy")}},
			map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}},
	} {
		req, _ := http.NewRequest("POST", srv.URL+"/queue", strings.NewReader(c.form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("gokrazy", "s3cret")
		for k, v := range c.header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %s, want 403", c.name, resp.Status)
		}
		if held(first) {
			t.Errorf("%s: the message was held", c.name)
		}
	}

	// The empty queue.
	empty, err := queue.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv2 := httptest.NewServer(testServer(t, empty).Handler())
	defer srv2.Close()
	if _, err := loadPage(ctx, srv2.URL+"/"); err != nil {
		t.Fatal(err)
	}
	text, err := chromedp.Run(ctx, chromedp.Text("#queue"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "The queue is empty") {
		t.Errorf("the empty queue shows %q", text)
	}
	if dir := os.Getenv("ELIT_SCREENSHOTS"); dir != "" {
		screenshot(t, ctx, filepath.Join(dir, "page-empty.png"), true)
	}
}

// forgetResult takes the last action's result off the page, so that
// waiting for #result after a click waits for the page the click loads.
var forgetResult = chromedp.Evaluate[chromedp.Void](`document.getElementById("result")?.remove()`)

func containsPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

// screenshot saves what the browser shows (the whole page when full) as
// a PNG file.
func screenshot(t *testing.T, ctx context.Context, path string, full bool) {
	t.Helper()
	action := chromedp.CaptureScreenshot()
	if full {
		action = chromedp.FullScreenshot(100)
	}
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`)); err != nil {
		t.Fatal(err)
	}
	png, err := chromedp.Run(ctx, action)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s (%d bytes)", path, len(png))
}
