package tlsrpt

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"elit.local/elit/decide"
	"elit.local/elit/reply"
)

// TestInboxStep: on the MX, mail to our reporting address is taken (no
// other step routes it) and its report kept; a tlsrpt report to
// postmaster is read and still delivered; mail to the address that is no
// report is refused; nothing is kept for a transaction not accepted or
// on submission; the inbox survives a restart.
func TestInboxStep(t *testing.T) {
	eml, err := os.ReadFile(filepath.Join(oracleDir, "mox-example.eml"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "received.json")
	inbox, err := OpenInbox(path)
	if err != nil {
		t.Fatal(err)
	}
	step := &Step{Inbox: inbox, Address: "TLSRPT@example.org"}
	for _, c := range []struct {
		name     string
		listener string
		rcpt     string
		data     []byte
		consumed bool
		refused  bool
		kept     int
	}{
		{"report to our address", "mx", "tlsrpt@example.org", eml, true, false, 1},
		{"report to postmaster", "mx", "postmaster@example.org", eml, false, false, 2},
		{"no report to our address", "mx", "tlsrpt@example.org", []byte("Subject: hi\r\n\r\nhello\r\n"), true, true, 2},
		{"no report to postmaster", "mx", "postmaster@example.org", []byte("Subject: hi\r\n\r\nhello\r\n"), false, false, 2},
		{"submission", "submission", "tlsrpt@example.org", eml, false, false, 2},
	} {
		tx := decide.NewTransaction(&decide.Session{Listener: c.listener}, "reports@example.com", decide.Params{})
		r := &decide.Rcpt{Address: c.rcpt}
		if err := step.Rcpt(context.Background(), tx, r); err != nil || r.Routed() != c.consumed {
			t.Errorf("%s: RCPT %v, taken %v", c.name, err, r.Routed())
		}
		tx.Rcpts = append(tx.Rcpts, c.rcpt)
		if !c.consumed {
			tx.Route(r, "", c.rcpt) // another step's
		}
		err := step.Data(context.Background(), tx, message(t, c.data))
		if _, ok := reply.As(err); ok != c.refused || !ok && err != nil {
			t.Errorf("%s: DATA %v", c.name, err)
		}
		if err == nil {
			tx.Accepted()
		}
		if got := len(inbox.List()); got != c.kept {
			t.Errorf("%s: %d reports kept, want %d", c.name, got, c.kept)
		}
	}
	again, err := OpenInbox(path)
	if err != nil || len(again.List()) != 2 {
		t.Fatalf("after a restart: %v", err)
	}
	sum := again.Summaries()[0]
	if sum.Organization != "Google Inc." || len(sum.Domains) != 1 || sum.Domains[0] != "test.xmox.nl" || sum.Successful+sum.Failed == 0 {
		t.Errorf("summary %+v", sum)
	}
}

// message is data as the steps see it at the end of DATA.
func message(t *testing.T, data []byte) *decide.Message {
	t.Helper()
	m := &decide.Message{Size: int64(len(data)), Open: func() io.Reader { return bytes.NewReader(data) }}
	head, _, _ := bytes.Cut(bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n")), []byte("\n\n"))
	var cur *decide.Field
	for _, line := range strings.Split(string(head), "\n") {
		if (strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")) && cur != nil {
			cur.Value += line
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		m.Header = append(m.Header, decide.Field{Name: name, Value: value})
		cur = &m.Header[len(m.Header)-1]
	}
	return m
}
