package control

import (
	"strings"
	"testing"

	"elit.local/elit/config"
	"elit.local/elit/queue"
)

// TestOfflineTLS: with no server, requiretls-on|off and
// tlsrequired-no|yes edit the message's envelope, and say when nothing
// changed.
func TestOfflineTLS(t *testing.T) {
	st := config.State{Dir: t.TempDir()}
	q, err := queue.Open(st.Queue())
	if err != nil {
		t.Fatal(err)
	}
	m := &queue.Message{From: "x@example.net", RequireTLS: true, Recipients: []queue.Recipient{{Address: "a@example.net"}}}
	if err := q.Put(m, strings.NewReader("hello\r\n")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		cmd, out          string
		requireTLS, tlsNo bool
	}{
		{"requiretls-off", "1 recipients; no server running: queue files edited", false, false},
		{"requiretls-off", "0 recipients (no server running; nothing changed)", false, false},
		{"tlsrequired-no", "1 recipients; no server running: queue files edited", false, true},
		{"tlsrequired-yes", "1 recipients", false, false},
		{"requiretls-on", "1 recipients", true, false},
	} {
		out, err := Command(st, c.cmd, m.ID)
		got, _ := q.Get(m.ID)
		if err != nil || !strings.Contains(out, c.out) || got.RequireTLS != c.requireTLS || got.TLSRequiredNo != c.tlsNo {
			t.Errorf("%s: %q, %v; requiretls %v, tls-required-no %v", c.cmd, out, err, got.RequireTLS, got.TLSRequiredNo)
		}
	}
}
