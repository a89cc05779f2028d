package queue

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestApplyTLS: the REQUIRETLS and TLS-Required settings of a message
// change through Apply, count the recipients still to deliver when they
// change and nothing when they do not, and are kept in the envelope.
func TestApplyTLS(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m := &Message{From: "a@example.org", RequireTLS: true, Recipients: []Recipient{
		{Address: "a@example.com"}, {Address: "b@example.com", Status: Held}, {Address: "c@example.com", Status: Delivered}}}
	if err := s.Put(m, bytes.NewReader([]byte("x\r\n"))); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		cmd        string
		n          int
		requireTLS bool
		tlsNo      bool
	}{
		{"requiretls-on", 0, true, false},
		{"tlsrequired-no", 2, true, true},
		{"requiretls-off", 2, false, true},
		{"requiretls-off", 0, false, true},
		{"tlsrequired-yes", 2, false, false},
		{"tlsrequired-yes", 0, false, false},
		{"requiretls-on", 2, true, false},
	} {
		n, err := m.Apply(c.cmd)
		if err != nil || n != c.n || m.RequireTLS != c.requireTLS || m.TLSRequiredNo != c.tlsNo {
			t.Errorf("%s: %d, %v: requiretls %v, tls-required-no %v; want %d, %v, %v", c.cmd, n, err, m.RequireTLS, m.TLSRequiredNo, c.n, c.requireTLS, c.tlsNo)
		}
	}
	m.Apply("tlsrequired-no")
	if err := s.Update(m); err != nil {
		t.Fatal(err)
	}
	qf, _ := os.ReadFile(filepath.Join(s.Dir(), m.ID+".q"))
	for _, want := range []string{`"requiretls":true`, `"tls_required_no":true`} {
		if !bytes.Contains(qf, []byte(want)) {
			t.Errorf("the state record lacks %s:\n%s", want, qf)
		}
	}
	if got, err := s.Get(m.ID); err != nil || !got.RequireTLS || !got.TLSRequiredNo || got.TLSReport {
		t.Errorf("read back: %+v, %v", got, err)
	}
	if _, err := m.Apply("requiretls"); err == nil {
		t.Error("an unknown command was applied")
	}
	for _, cmd := range []string{"hold", "release", "retry", "drop", "drop-quietly", "requiretls-on", "requiretls-off", "tlsrequired-no", "tlsrequired-yes"} {
		if _, err := (&Message{}).Apply(cmd); err != nil {
			t.Errorf("%s: %v", cmd, err)
		}
	}
}
