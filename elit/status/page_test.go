package status

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"elit.local/elit/certs"
	"elit.local/elit/dns"
	"elit.local/elit/dns/dnstest"
	"elit.local/elit/queue"
	"elit.local/elit/records"
	"elit.local/elit/userdb"
)

// plainServer is a status page over an empty queue, without actions.
func plainServer(t *testing.T) *Server {
	dir := t.TempDir()
	q, err := queue.Open(filepath.Join(dir, "queue"))
	if err != nil {
		t.Fatal(err)
	}
	return &Server{Domain: "example.org", Hostname: "mx.example.org", Queue: q, Password: "pw",
		Loader: userdb.NewLoader(filepath.Join(dir, "none.json"), "", slog.New(slog.DiscardHandler), "example.org", nil),
		Log:    slog.New(slog.DiscardHandler)}
}

func request(h http.Handler, method, path, remote string, body url.Values, header map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body.Encode()))
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.RemoteAddr = remote
	for k, v := range header {
		req.Header.Set(k, v)
	}
	if _, ok := header["Authorization"]; !ok {
		req.SetBasicAuth("gokrazy", "pw")
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// TestHeaders: every answer forbids framing, sniffing, referrers, caching
// and anything the page does not serve itself; the style sheet and script
// come from the binary.
func TestHeaders(t *testing.T) {
	h := plainServer(t).Handler()
	for _, path := range []string{"/", "/static/page.css", "/static/page.js", "/status.json", "/nothing"} {
		w := request(h, "GET", path, "127.0.0.1:5000", nil, nil)
		for k, v := range map[string]string{
			"Content-Security-Policy": contentSecurityPolicy,
			"X-Frame-Options":         "DENY",
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "no-referrer",
			"Cache-Control":           "no-store",
		} {
			if got := w.Header().Get(k); got != v {
				t.Errorf("%s: %s: %q, want %q", path, k, got, v)
			}
		}
	}
	if w := request(h, "GET", "/static/page.css", "127.0.0.1:5000", nil, nil); w.Code != 200 || !strings.Contains(w.Header().Get("Content-Type"), "text/css") {
		t.Errorf("page.css: %d %s", w.Code, w.Header().Get("Content-Type"))
	}
	page := request(h, "GET", "/", "127.0.0.1:5000", nil, nil).Body.String()
	for _, bad := range []string{"<style", " style=", "<script>", " onclick=", "pw"} {
		if strings.Contains(page, bad) {
			t.Errorf("the page has %q", bad)
		}
	}
}

// TestLoginLimit: after MaxLoginFailures wrong passwords a client gets 429
// without its password being looked at, even the right one; another
// client still gets in; a browser's first request without credentials
// is no failure.
func TestLoginLimit(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	s := plainServer(t)
	s.Now = func() time.Time { return now }
	h := s.Handler()
	wrong := map[string]string{"Authorization": "Basic " + "Z29rcmF6eTp3cm9uZw=="} // gokrazy:wrong
	none := map[string]string{"Authorization": ""}
	for range 3 {
		if w := request(h, "GET", "/", "192.168.1.10:5000", nil, none); w.Code != http.StatusUnauthorized {
			t.Fatalf("no credentials: %d", w.Code)
		}
	}
	for i := range MaxLoginFailures {
		if w := request(h, "GET", "/", "192.168.1.10:5000", nil, wrong); w.Code != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %d", i, w.Code)
		}
	}
	if w := request(h, "GET", "/", "192.168.1.10:6000", nil, nil); w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Errorf("the right password after %d failures: %d, want 429 with Retry-After", MaxLoginFailures, w.Code)
	}
	if w := request(h, "GET", "/", "192.168.1.11:5000", nil, nil); w.Code != http.StatusOK {
		t.Errorf("another client: %d", w.Code)
	}
	now = now.Add(LoginFailWindow + time.Second)
	if w := request(h, "GET", "/", "192.168.1.10:5000", nil, nil); w.Code != http.StatusOK {
		t.Errorf("after the window: %d", w.Code)
	}
	// In all: failures from many clients close the door to everyone.
	for i := range MaxLoginFailuresAll {
		request(h, "GET", "/", fmt.Sprintf("10.0.%d.%d:5000", i/200, i%200), nil, wrong)
	}
	if w := request(h, "GET", "/", "192.168.1.12:5000", nil, nil); w.Code != http.StatusTooManyRequests {
		t.Errorf("after %d failures in all: %d, want 429", MaxLoginFailuresAll, w.Code)
	}
}

// TestActionsRefused: a POST of the page needs its token, and a browser's
// cross-site request is refused even with it; elit-image's POST /sync
// (no browser headers) still works.
func TestActionsRefused(t *testing.T) {
	s := plainServer(t)
	var did []string
	s.Control = func(_ context.Context, cmd, id string) (string, error) {
		did = append(did, cmd+" "+id)
		return "ok", nil
	}
	h := s.Handler()
	Sync = func() {}
	token := s.csrfToken("gokrazy")
	for _, c := range []struct {
		name   string
		path   string
		form   url.Values
		header map[string]string
		code   int
	}{
		{"no token", "/queue", url.Values{"do": {"retry X"}}, nil, http.StatusForbidden},
		{"wrong token", "/queue", url.Values{"do": {"retry X"}, "csrf": {token[1:]}}, nil, http.StatusForbidden},
		{"cross-site", "/queue", url.Values{"do": {"retry X"}, "csrf": {token}}, map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"other origin", "/queue", url.Values{"do": {"retry X"}, "csrf": {token}}, map[string]string{"Origin": "http://evil.example"}, http.StatusForbidden},
		{"DNS without token", "/dns", url.Values{}, nil, http.StatusForbidden},
		{"unknown command", "/queue", url.Values{"do": {"explode X"}, "csrf": {token}}, nil, http.StatusBadRequest},
		{"one", "/queue", url.Values{"do": {"retry A"}, "csrf": {token}, "return": {"sort=-next&page=3&evil=1"}}, map[string]string{"Sec-Fetch-Site": "same-origin"}, http.StatusSeeOther},
		{"checked", "/queue", url.Values{"act": {"drop-quietly"}, "id": {"B", "C"}, "csrf": {token}}, nil, http.StatusSeeOther},
		{"sync", "/sync", nil, nil, http.StatusOK},
	} {
		w := request(h, "POST", c.path, "192.168.1.10:5000", c.form, c.header)
		if w.Code != c.code {
			t.Errorf("%s: %d, want %d (%s)", c.name, w.Code, c.code, w.Body)
		}
		if c.name == "one" {
			if loc := w.Header().Get("Location"); loc != "/?did=retry&n=1&page=3&sort=-next#queue" {
				t.Errorf("back to %q", loc)
			}
		}
	}
	if want := []string{"retry A", "drop-quietly B", "drop-quietly C"}; !slices.Equal(did, want) {
		t.Errorf("commands %q, want %q", did, want)
	}
}

// TestQueueTable: sorting, filtering and paging on the server.
func TestQueueTable(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	var msgs []*queue.Message
	for i := range 250 {
		msgs = append(msgs, &queue.Message{ID: fmt.Sprintf("m%03d", i), From: fmt.Sprintf("s%03d@example.org", 249-i),
			Received: now.Add(-time.Duration(i) * time.Minute),
			Recipients: []queue.Recipient{{Address: fmt.Sprintf("r%d@example.net", i), Status: queue.Pending, Attempts: i % 5,
				NextAttempt: now.Add(time.Duration(i%10) * time.Minute)}}})
	}
	msgs[7].Recipients[0].Status = queue.Held
	s := &Server{}
	for _, c := range []struct {
		query           string
		first, last     string
		total, page, of int
	}{
		{"", "m249", "m150", 250, 1, 3},               // oldest first
		{"sort=-received", "m000", "m099", 250, 1, 3}, // newest first
		{"page=3", "m049", "m000", 250, 3, 3},
		{"page=9", "m049", "m000", 250, 3, 3},     // past the end: the last
		{"sort=from", "m249", "m150", 250, 1, 3},  // s000 is m249
		{"sort=next", "m000", "m243", 250, 1, 3},  // due now first (ties by ID)
		{"sort=-next", "m007", "m006", 250, 1, 3}, // the held one, with nothing due, first
		{"sort=-next&page=3", "m241", "m000", 250, 3, 3},
		{"q=R17@", "m017", "m017", 1, 1, 1},
		{"q=m24", "m249", "m240", 10, 1, 1},
		{"sort=bogus", "m249", "m150", 250, 1, 3},
	} {
		v, _ := url.ParseQuery(c.query)
		tb := s.queueTable(msgs, parseQueueView(v), now)
		if len(tb.Rows) == 0 {
			t.Errorf("%q: no rows", c.query)
			continue
		}
		if first, last := tb.Rows[0].ID, tb.Rows[len(tb.Rows)-1].ID; first != c.first || last != c.last || tb.Total != c.total || tb.Page != c.page || tb.Pages != c.of {
			t.Errorf("%q: %s…%s of %d, page %d of %d; want %s…%s of %d, page %d of %d",
				c.query, first, last, tb.Total, tb.Page, tb.Pages, c.first, c.last, c.total, c.page, c.of)
		}
	}
	tb := s.queueTable(msgs, parseQueueView(url.Values{"page": {"2"}, "sort": {"attempts"}}), now)
	if tb.PrevURL != "/?sort=attempts#queue" || tb.NextURL != "/?page=3&sort=attempts#queue" || tb.Columns[3].Arrow != "▲" || tb.Columns[3].URL != "/?sort=-attempts#queue" {
		t.Errorf("links: prev %q next %q, attempts column %+v", tb.PrevURL, tb.NextURL, tb.Columns[3])
	}
	if r := row(msgs[7], now); r.Next != "held" || !r.Held || r.Pending {
		t.Errorf("held row: %+v", r)
	}
	if r := row(msgs[3], now); r.Next != "in 3m" || r.Age != "3m" {
		t.Errorf("row: next %q, age %q", r.Next, r.Age)
	}
}

// TestCheckRecord: each kind of record against what the loopback DNS
// answers.
func TestCheckRecord(t *testing.T) {
	zone := dnstest.Serve(t, dnstest.Zone{Records: []string{
		"example.org. 300 IN MX 10 mx.example.org.",
		"other.example. 300 IN MX 10 mx.elsewhere.example.",
		"mx.example.org. 300 IN A 192.0.2.25",
		"mta-sts.example.org. 300 IN CNAME mx.example.org.",
		"mta-sts.other.example. 300 IN A 192.0.2.99",
		`example.org. 300 IN TXT "v=spf1 mx -all"`,
		`example.org. 300 IN TXT "google-site-verification=abc"`,
		`other.example. 300 IN TXT "v=spf1 a -all"`,
		`two.example. 300 IN TXT "v=spf1 mx -all"`,
		`two.example. 300 IN TXT "v=spf1 a -all"`,
		`_dmarc.example.org. 300 IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@example.org"`,
		`s1._domainkey.example.org. 300 IN TXT "v=DKIM1; k=ed25519; " "p=abcd efgh"`,
		`s2._domainkey.example.org. 300 IN TXT "v=DKIM1; k=ed25519; p=other"`,
		"_submissions._tcp.example.org. 300 IN SRV 0 1 465 mx.example.org.",
		"_25._tcp.mx.example.org. 300 IN TLSA 3 1 1 AABB",
	}, ServFail: []string{"broken.example."}})
	res := &dns.Client{Server: zone, Timeout: time.Second}
	for _, c := range []struct {
		r    records.Record
		want string
	}{
		{records.Record{Name: "example.org.", Type: "MX", Value: "10 mx.example.org."}, Right},
		{records.Record{Name: "other.example.", Type: "MX", Value: "10 mx.example.org."}, Wrong},
		{records.Record{Name: "none.example.", Type: "MX", Value: "10 mx.example.org."}, Missing},
		{records.Record{Name: "broken.example.", Type: "MX", Value: "10 mx.example.org."}, Unknown},
		{records.Record{Name: "mx.example.org.", Type: "A/AAAA", Value: "<the public address>"}, Right},
		{records.Record{Name: "mx.other.example.", Type: "A/AAAA", Value: "<the public address>"}, Missing},
		{records.Record{Name: "example.org.", Type: "TXT", Value: `"v=spf1 mx -all"`}, Right},
		{records.Record{Name: "other.example.", Type: "TXT", Value: `"v=spf1 mx -all"`}, Wrong},
		{records.Record{Name: "two.example.", Type: "TXT", Value: `"v=spf1 mx -all"`}, Wrong},
		{records.Record{Name: "none.example.", Type: "TXT", Value: `"v=spf1 mx -all"`}, Missing},
		{records.Record{Name: "_dmarc.example.org.", Type: "TXT", Value: `"v=DMARC1; p=none; rua=mailto:postmaster@example.org"`}, Right},
		{records.Record{Name: "s1._domainkey.example.org.", Type: "TXT", Value: `"v=DKIM1; k=ed25519; p=abcdefgh"`}, Right},
		{records.Record{Name: "s2._domainkey.example.org.", Type: "TXT", Value: `"v=DKIM1; k=ed25519; p=abcdefgh"`}, Wrong},
		{records.Record{Name: "_submissions._tcp.example.org.", Type: "SRV", Value: "0 1 465 mx.example.org."}, Right},
		{records.Record{Name: "_submission._tcp.example.org.", Type: "SRV", Value: "0 1 587 mx.example.org."}, Missing},
		{records.Record{Name: "_25._tcp.mx.example.org.", Type: "TLSA", Value: "3 1 1 aabb"}, Right},
		{records.Record{Name: "_25._tcp.mx.example.org.", Type: "TLSA", Value: "3 1 1 ccdd"}, Wrong},
		{records.Record{Name: "mta-sts.example.org.", Type: "CNAME", Value: "mx.example.org."}, Right},
		{records.Record{Name: "mta-sts.other.example.", Type: "CNAME", Value: "mx.example.org."}, Wrong},
	} {
		got := CheckRecord(context.Background(), res, c.r)
		if got.State != c.want {
			t.Errorf("%s %s %s: %s (found %q, %s), want %s", c.r.Name, c.r.Type, c.r.Value, got.State, got.Found, got.Note, c.want)
		}
	}
}

// TestCertificate: the certificate's expiry is red from 14 days before,
// with ACME's renewal time and its last failure.
func TestCertificate(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name string
		info certs.Info
		want []string
		not  []string
	}{
		{"fine", certs.Info{Source: "acme", Names: []string{"mx.example.org"}, NotAfter: now.Add(40 * 24 * time.Hour), RenewAt: now.Add(10 * 24 * time.Hour)},
			[]string{"(40d 0h left)", "ACME renews it from 2026-12-11 12:00 UTC"}, []string{"expires within 14 days", "expiring"}},
		{"soon", certs.Info{Source: "file", NotAfter: now.Add(13 * 24 * time.Hour)},
			[]string{`<p class="note bad">file:`, "It expires within 14 days", `<b class="bad">expiring</b>`}, nil},
		{"expired", certs.Info{Source: "acme", NotAfter: now.Add(-time.Hour), ACMEError: "acme: <urn:ietf:params:acme:error:connection>", ACMEErrorTime: now},
			[]string{"expired 1h 0m ago", "The last ACME order failed", "&lt;urn:ietf:params:acme:error:connection&gt;"}, nil},
	} {
		s := plainServer(t)
		s.Now = func() time.Time { return now }
		s.Cert = func() certs.Info { return c.info }
		page := request(s.Handler(), "GET", "/", "127.0.0.1:5000", nil, nil).Body.String()
		for _, w := range c.want {
			if !strings.Contains(page, w) {
				t.Errorf("%s: the page lacks %q", c.name, w)
			}
		}
		for _, w := range c.not {
			if strings.Contains(page, w) {
				t.Errorf("%s: the page has %q", c.name, w)
			}
		}
	}
}
