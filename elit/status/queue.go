package status

import (
	"cmp"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"elit.local/elit/queue"
)

// PageSize is how many messages the queue table shows at once: sorting
// and paging happen here, so that a queue of tens of thousands renders
// as fast as a short one.
const PageSize = 100

// maxSelected bounds the messages one action of the page acts on.
const maxSelected = 1000

// queueView is the queue table's query: ?sort=COLUMN (- first for
// descending), &page=N (from 1), &q=TEXT (queue ID or address).
type queueView struct {
	Sort   string
	Desc   bool
	Page   int
	Filter string
}

// sortKeys are the table's sortable columns; received is the default.
var sortKeys = map[string]func(a, b *queue.Message) int{
	"received": func(a, b *queue.Message) int { return cmp.Or(a.Received.Compare(b.Received), cmp.Compare(a.ID, b.ID)) },
	"from": func(a, b *queue.Message) int {
		return strings.Compare(strings.ToLower(a.From), strings.ToLower(b.From))
	},
	"to":       func(a, b *queue.Message) int { return strings.Compare(firstRecipient(a), firstRecipient(b)) },
	"attempts": func(a, b *queue.Message) int { return cmp.Compare(attempts(a), attempts(b)) },
	"next": func(a, b *queue.Message) int {
		na, oka := nextAttempt(a)
		nb, okb := nextAttempt(b)
		if oka != okb { // nothing due (held, done) goes last
			if oka {
				return -1
			}
			return 1
		}
		return na.Compare(nb)
	},
	"error": func(a, b *queue.Message) int { return strings.Compare(lastError(a), lastError(b)) },
}

func parseQueueView(v url.Values) queueView {
	qv := queueView{Sort: "received", Page: 1, Filter: strings.TrimSpace(v.Get("q"))}
	if s := v.Get("sort"); s != "" {
		k, desc := strings.CutPrefix(s, "-")
		if _, ok := sortKeys[k]; ok {
			qv.Sort, qv.Desc = k, desc
		}
	}
	if p, err := strconv.Atoi(v.Get("page")); err == nil && p > 0 {
		qv.Page = p
	}
	return qv
}

// values is the view as query parameters (defaults left out).
func (qv queueView) values() url.Values {
	v := url.Values{}
	if qv.Sort != "received" || qv.Desc {
		s := qv.Sort
		if qv.Desc {
			s = "-" + s
		}
		v.Set("sort", s)
	}
	if qv.Page > 1 {
		v.Set("page", strconv.Itoa(qv.Page))
	}
	if qv.Filter != "" {
		v.Set("q", qv.Filter)
	}
	return v
}

// URL is the page's address with this view.
func (qv queueView) URL() string {
	if e := qv.values().Encode(); e != "" {
		return "/?" + e + "#queue"
	}
	return "/#queue"
}

// QueueTable is the queue section of the page.
type QueueTable struct {
	View                     queueView
	Total, Shown, First      int // matching messages; on this page; the first's number
	Page, Pages              int
	Rows                     []QueueRow
	Columns                  []Column
	FirstURL, PrevURL        string // "" on the first page
	NextURL, LastURL         string // "" on the last page
	Return                   string // the view's query, for the forms to come back to
	Result                   string // what the last action did
	Error                    string // why some messages could not be read
	Pending, Held, Recipient int    // recipients pending and held, all recipients
}

// Column is a sortable header of the table.
type Column struct {
	Label, URL string
	Arrow      string // ▲ or ▼ on the column sorted by
}

// QueueRow is one message of the table.
type QueueRow struct {
	ID, Age, Received, From string
	Recipients              []RecipientRow
	Attempts                int
	LastError               string
	Next, NextTitle         string
	Held, Pending           bool // some recipient is held, pending
}

// RecipientRow is one recipient's state.
type RecipientRow struct {
	Address, Status string
	Class           string // the state's CSS class: pending, held, failed, delivered
}

// queueTable sorts, filters and pages msgs for the view.
func (s *Server) queueTable(msgs []*queue.Message, qv queueView, now time.Time) QueueTable {
	t := QueueTable{View: qv}
	for _, m := range msgs {
		for _, r := range m.Recipients {
			t.Recipient++
			switch r.Status {
			case queue.Pending:
				t.Pending++
			case queue.Held:
				t.Held++
			}
		}
	}
	if qv.Filter != "" {
		f := strings.ToLower(qv.Filter)
		msgs = slices.DeleteFunc(slices.Clone(msgs), func(m *queue.Message) bool { return !matches(m, f) })
	}
	less := sortKeys[qv.Sort]
	sorted := slices.Clone(msgs)
	slices.SortStableFunc(sorted, func(a, b *queue.Message) int {
		c := cmp.Or(less(a, b), strings.Compare(a.ID, b.ID))
		if qv.Desc {
			return -c
		}
		return c
	})
	t.Total = len(sorted)
	t.Pages = max(1, (t.Total+PageSize-1)/PageSize)
	t.Page = min(qv.Page, t.Pages)
	start := (t.Page - 1) * PageSize
	end := min(start+PageSize, t.Total)
	t.First = start + 1
	t.Shown = end - start
	for _, m := range sorted[start:end] {
		t.Rows = append(t.Rows, row(m, now))
	}
	at := func(page int) string {
		v := qv
		v.Page = page
		return v.URL()
	}
	if t.Page > 1 {
		t.FirstURL, t.PrevURL = at(1), at(t.Page-1)
	}
	if t.Page < t.Pages {
		t.NextURL, t.LastURL = at(t.Page+1), at(t.Pages)
	}
	cur := qv
	cur.Page = t.Page
	t.Return = cur.values().Encode()
	for _, c := range []struct{ key, label string }{
		{"received", "age"}, {"from", "sender"}, {"to", "recipients"}, {"attempts", "attempts"}, {"error", "last error"}, {"next", "next attempt"},
	} {
		v := queueView{Sort: c.key, Filter: qv.Filter}
		col := Column{Label: c.label}
		if qv.Sort == c.key {
			v.Desc = !qv.Desc
			col.Arrow = "▲"
			if qv.Desc {
				col.Arrow = "▼"
			}
		}
		col.URL = v.URL()
		t.Columns = append(t.Columns, col)
	}
	return t
}

func matches(m *queue.Message, f string) bool {
	if strings.Contains(strings.ToLower(m.ID), f) || strings.Contains(strings.ToLower(m.From), f) || strings.Contains(strings.ToLower(m.OrigFrom), f) {
		return true
	}
	for _, r := range m.Recipients {
		if strings.Contains(strings.ToLower(r.Address), f) || strings.Contains(strings.ToLower(r.Original), f) {
			return true
		}
	}
	return false
}

func row(m *queue.Message, now time.Time) QueueRow {
	r := QueueRow{ID: m.ID, Age: age(now.Sub(m.Received)), Received: m.Received.Format(time.DateTime + " MST"),
		From: m.From, Attempts: attempts(m), LastError: lastError(m)}
	if r.From == "" {
		r.From = "<>"
	}
	for _, rc := range m.Recipients {
		st := string(rc.Status)
		if rc.Status == queue.Failed && !rc.Bounced {
			st = "failed, bounce due"
		}
		r.Recipients = append(r.Recipients, RecipientRow{Address: rc.Address, Status: st, Class: string(rc.Status)})
		r.Held = r.Held || rc.Status == queue.Held
		r.Pending = r.Pending || rc.Status == queue.Pending
	}
	switch next, ok := nextAttempt(m); {
	case !ok && r.Held:
		r.Next = "held"
	case !ok:
		r.Next = "—"
	case !next.After(now):
		r.Next, r.NextTitle = "now", next.Format(time.DateTime+" MST")
	default:
		r.Next, r.NextTitle = "in "+age(next.Sub(now)), next.Format(time.DateTime+" MST")
	}
	return r
}

// age says a duration as people do, to the largest two units.
func age(d time.Duration) string {
	switch d = max(d, 0); {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd %dh", int(d.Hours())/24, int(d.Hours())%24)
}

func firstRecipient(m *queue.Message) string {
	if len(m.Recipients) == 0 {
		return ""
	}
	return strings.ToLower(m.Recipients[0].Address)
}

// attempts is the most attempts of a recipient.
func attempts(m *queue.Message) int {
	n := 0
	for _, r := range m.Recipients {
		n = max(n, r.Attempts)
	}
	return n
}

// lastError is the last error of the first recipient that has one.
func lastError(m *queue.Message) string {
	for _, r := range m.Recipients {
		if r.LastError != "" {
			return r.LastError
		}
	}
	return ""
}

// nextAttempt is when the message is next tried (its earliest pending
// recipient; zero: now), and whether anything is to be tried.
func nextAttempt(m *queue.Message) (time.Time, bool) {
	var t time.Time
	ok := false
	for _, r := range m.Recipients {
		if r.Status == queue.Pending || r.Status == queue.Failed && !r.Bounced {
			if !ok || r.NextAttempt.Before(t) {
				t = r.NextAttempt
			}
			ok = true
		}
	}
	return t, ok
}

// queueActions are the commands the page offers, as elit queue names
// them (control, queue.Message.Apply).
var queueActions = map[string]string{
	"hold":         "held",
	"release":      "released",
	"retry":        "retried",
	"drop":         "dropped (sender told)",
	"drop-quietly": "dropped quietly",
}

// queueAction carries out a queue action of the page, POST /queue:
// do=COMMAND ID for one message (a row's button), or act=COMMAND with
// the checked id values; then back to the table (303) saying what was
// done.
func (s *Server) queueAction(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	if !s.checkCSRF(r) {
		s.Log.Warn("status page: action refused: no valid CSRF token", "client", r.RemoteAddr)
		http.Error(w, "refused: the form's token is missing or stale; reload the page", http.StatusForbidden)
		return
	}
	cmd, ids := r.PostFormValue("act"), r.PostForm["id"]
	if one := r.PostFormValue("do"); one != "" {
		var id string
		cmd, id, _ = strings.Cut(one, " ")
		ids = []string{id}
	}
	if _, ok := queueActions[cmd]; !ok {
		http.Error(w, fmt.Sprintf("unknown action %q", cmd), http.StatusBadRequest)
		return
	}
	if len(ids) > maxSelected {
		http.Error(w, fmt.Sprintf("at most %d messages at once", maxSelected), http.StatusBadRequest)
		return
	}
	if s.Control == nil {
		http.Error(w, "queue actions are not available here", http.StatusServiceUnavailable)
		return
	}
	done, failed := 0, 0
	for _, id := range ids {
		if _, err := s.Control(r.Context(), cmd, id); err != nil {
			failed++
			s.Log.Warn("status page: queue action failed", "command", cmd, "id", id, "err", err)
			continue
		}
		done++
	}
	s.Log.Info("status page: queue action", "command", cmd, "messages", done, "failed", failed, "client", r.RemoteAddr)
	back, _ := url.ParseQuery(r.PostFormValue("return"))
	qv := parseQueueView(back).values()
	qv.Set("did", cmd)
	qv.Set("n", strconv.Itoa(done))
	if failed > 0 {
		qv.Set("failed", strconv.Itoa(failed))
	}
	http.Redirect(w, r, "/?"+qv.Encode()+"#queue", http.StatusSeeOther)
}

// actionResult says what the redirect after an action reports (only
// numbers and a known command: nothing a link could forge into text).
func actionResult(v url.Values) string {
	what, ok := queueActions[v.Get("did")]
	if !ok {
		return ""
	}
	n, _ := strconv.Atoi(v.Get("n"))
	msg := fmt.Sprintf("%d %s %s.", n, plural(n, "message", "messages"), what)
	if f, _ := strconv.Atoi(v.Get("failed")); f > 0 {
		msg += fmt.Sprintf(" %d could not be (gone already, or busy: see the log).", f)
	}
	return msg
}

func plural(n int, one, more string) string {
	if n == 1 {
		return one
	}
	return more
}
