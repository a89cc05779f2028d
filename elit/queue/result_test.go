package queue

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestResult: a recipient's result is kept as fields a person can read
// in the envelope, and comes back as it was.
func TestResult(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m := newMessage("a@example.com")
	if err := s.Put(m, bytes.NewReader([]byte("x\r\n"))); err != nil {
		t.Fatal(err)
	}
	res := Result{RemoteMTA: "mx.example.com", RemoteAddr: "192.0.2.1:25", Step: "RCPT", Code: 550, Enhanced: "5.1.1", Text: "no such user", Permanent: true}
	m.Recipients[0].Status, m.Recipients[0].Result = Failed, res
	m.Recipients[0].LastError = "5.1.1 mx.example.com said at RCPT: 550 no such user"
	if err := s.Update(m); err != nil {
		t.Fatal(err)
	}
	js, _ := os.ReadFile(filepath.Join(s.Dir(), m.ID+".q"))
	for _, want := range []string{`"remote_mta":"mx.example.com"`, `"remote_addr":"192.0.2.1:25"`, `"step":"RCPT"`,
		`"code":550`, `"enhanced":"5.1.1"`, `"text":"no such user"`, `"permanent":true`} {
		if !bytes.Contains(js, []byte(want)) {
			t.Errorf("the envelope lacks %s:\n%s", want, js)
		}
	}
	got, err := s.Get(m.ID)
	if err != nil || got.Recipients[0].Result != res {
		t.Errorf("read back: %+v, %v", got.Recipients[0].Result, err)
	}
	// A recipient without a result has none in its envelope.
	m.Recipients[0].Result = Result{}
	s.Update(m)
	js, _ = os.ReadFile(filepath.Join(s.Dir(), m.ID+".q"))
	if last := js[bytes.LastIndex(js, []byte(`{"recipients"`)):]; bytes.Contains(last, []byte(`"result"`)) {
		t.Errorf("an empty result is written:\n%s", last)
	}
}

// TestOldEnvelope: an envelope written before results were kept (its
// last error as text only) reads, with no result.
func TestOldEnvelope(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const id = "20260101T000000-0123456789ab"
	old := `{
  "id": "` + id + `",
  "received": "2026-01-01T00:00:00Z",
  "from": "din@example.org",
  "recipients": [
    {
      "address": "a@example.com",
      "status": "pending",
      "attempts": 2,
      "last_error": "4.2.2 mx.example.com said at RCPT: 452 mailbox full",
      "next_attempt": "2026-01-01T01:00:00Z"
    }
  ],
  "size": 3
}
`
	os.WriteFile(filepath.Join(s.Dir(), id+".msg"), []byte("x\r\n"), 0o600)
	os.WriteFile(filepath.Join(s.Dir(), id+".json"), []byte(old), 0o600)
	m, err := s.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if r := m.Recipients[0]; r.Result != (Result{}) || r.LastError == "" || r.Attempts != 2 {
		t.Errorf("%+v", r)
	}
}

// TestDropResult: a recipient the operator drops fails with a result of
// ours saying so (5.3.0), its last error kept in LastError.
func TestDropResult(t *testing.T) {
	m := newMessage("a@example.com", "b@example.com")
	m.Recipients[0].Status = Pending
	m.Recipients[0].LastError = "4.4.1 connecting to mx.example.com: refused"
	m.Recipients[0].Result = Result{RemoteMTA: "mx.example.com", Step: "connect", Enhanced: "4.4.1", Text: "connecting to mx.example.com: refused"}
	m.Recipients[1].Status = Delivered
	if n := m.Drop(true); n != 1 {
		t.Fatalf("dropped %d", n)
	}
	r := m.Recipients[0]
	want := Result{Enhanced: "5.3.0", Text: "dropped from the queue by the operator", Permanent: true}
	if r.Status != Failed || r.Result != want || r.LastError != DroppedPrefix+"4.4.1 connecting to mx.example.com: refused" {
		t.Errorf("%+v", r)
	}
}
