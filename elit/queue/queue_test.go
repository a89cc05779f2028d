package queue

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func newMessage(rcpts ...string) *Message {
	m := &Message{From: "din@example.org", ClientAddr: "127.0.0.1:4242", AuthUser: "din"}
	for _, r := range rcpts {
		m.Recipients = append(m.Recipients, Recipient{Address: r, Original: "team@example.org"})
	}
	return m
}

func TestPutGet(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	body := "Subject: hi\r\n\r\nhello\r\n"
	m := newMessage("a@example.net", "b@example.net")
	if err := s.Put(m, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	if !idPattern.MatchString(m.ID) || m.Size != int64(len(body)) || m.Received.IsZero() {
		t.Errorf("after Put: %+v", m)
	}
	got, err := s.Get(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.From != m.From || len(got.Recipients) != 2 || got.Recipients[1].Status != Pending || got.Recipients[0].Original != "team@example.org" {
		t.Errorf("Get: %+v", got)
	}
	f, err := s.Data(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(f)
	f.Close()
	if string(data) != body {
		t.Errorf("data %q", data)
	}
	// One file, holding the data and the envelope in JSON.
	qf, _ := os.ReadFile(filepath.Join(s.Dir(), m.ID+".q"))
	if !bytes.Contains(qf, []byte(body)) || !bytes.Contains(qf, []byte(`"status":"pending"`)) {
		t.Errorf("queue file:\n%s", qf)
	}

	got.Recipients[0].Status = Delivered
	got.Recipients[1].Status = Failed
	got.Recipients[1].LastError = "550 5.1.1 no such user"
	if err := s.Update(got); err != nil {
		t.Fatal(err)
	}
	again, _ := s.Get(m.ID)
	if again.Done() || again.Recipients[1].LastError == "" {
		t.Errorf("after Update (failed, not bounced yet): %+v", again)
	}
	again.Recipients[1].Bounced = true
	s.Update(again)
	if again, _ = s.Get(m.ID); !again.Done() {
		t.Errorf("after the bounce: %+v", again)
	}
	if err := s.Remove(m.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(m.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("after Remove: %v", err)
	}
	if entries, _ := os.ReadDir(s.Dir()); len(entries) != 0 {
		t.Errorf("files left: %v", entries)
	}
}

func TestBadIDs(t *testing.T) {
	s, _ := Open(t.TempDir())
	for _, id := range []string{"", "../../etc/passwd", "20261122T000000-zzzzzzzzzzzz", "20261122T000000-0123456789ab/../x"} {
		if _, err := s.Get(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q): %v", id, err)
		}
		if _, err := s.Data(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Data(%q): %v", id, err)
		}
		if err := s.Remove(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Remove(%q): %v", id, err)
		}
	}
}

type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("connection reset")
	}
	k := min(len(p), r.n)
	r.n -= k
	return k, nil
}

// TestPutFails: a message that could not be read whole leaves nothing.
func TestPutFails(t *testing.T) {
	s, _ := Open(t.TempDir())
	if err := s.Put(newMessage("a@example.net"), &failingReader{5000}); err == nil {
		t.Fatal("Put succeeded")
	}
	if entries, _ := os.ReadDir(s.Dir()); len(entries) != 0 {
		t.Errorf("files left: %v", entries)
	}
}

func TestListAndCleanup(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir)
	var ids []string
	for i := range 3 {
		s.now = func() time.Time { return time.Date(2026, 11, 22, 10, i, 0, 0, time.UTC) }
		m := newMessage("a@example.net")
		if err := s.Put(m, strings.NewReader("x")); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	// What a crash can leave: a temporary file, a file renamed in place
	// but not all written.
	os.WriteFile(filepath.Join(dir, ".20261122T100000-0123456789ab.q.tmp"), []byte("partial"), 0o600)
	os.WriteFile(filepath.Join(dir, "20261122T100500-0123456789ab.q"), []byte("ELQ1 never acknowledged"), 0o600)

	s2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	// A damaged envelope must not hide the others.
	os.WriteFile(filepath.Join(dir, ids[1]+".q"), []byte("{"), 0o600)
	msgs, err := s2.List()
	if err == nil || !strings.Contains(err.Error(), ids[1]) {
		t.Errorf("List error %v, want one naming %s", err, ids[1])
	}
	if len(msgs) != 2 || msgs[0].ID != ids[0] || msgs[1].ID != ids[2] {
		t.Errorf("List: %d messages", len(msgs))
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 4 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("after Open: %q, want the 3 messages and the torn one put aside", names)
	}
}

// TestSIGKILL: a process putting messages is killed at random moments;
// every message it was told was stored (Put returned) is in the queue after
// Open, intact, and nothing half-written is.
func TestSIGKILL(t *testing.T) {
	if os.Getenv("QUEUE_TEST_WRITER") != "" {
		writer(os.Getenv("QUEUE_TEST_WRITER"))
		return
	}
	dir := t.TempDir()
	acked := map[string]bool{}
	for round := range 8 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSIGKILL$")
		cmd.Env = append(os.Environ(), "QUEUE_TEST_WRITER="+dir)
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		deadline := time.After(time.Duration(20+rand.IntN(200)) * time.Millisecond)
	read:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break read
				}
				if id, ok := strings.CutPrefix(l, "acked "); ok {
					acked[id] = true
				}
			case <-deadline:
				cmd.Process.Signal(syscall.SIGKILL)
				for l := range lines {
					if id, ok := strings.CutPrefix(l, "acked "); ok {
						acked[id] = true
					}
				}
				break read
			}
		}
		cmd.Wait()
		s, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := s.List()
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		present := map[string]bool{}
		for _, m := range msgs {
			present[m.ID] = true
			f, err := s.Data(m.ID)
			if err != nil {
				t.Fatalf("round %d: %s has no data: %v", round, m.ID, err)
			}
			data, _ := io.ReadAll(f)
			f.Close()
			if want := body(m.Recipients[0].Address); string(data) != want || m.Size != int64(len(want)) {
				t.Fatalf("round %d: %s: %d bytes, want %d", round, m.ID, len(data), len(want))
			}
		}
		for id := range acked {
			if !present[id] {
				t.Fatalf("round %d: acknowledged message %s is lost", round, id)
			}
		}
	}
	if len(acked) < 10 {
		t.Errorf("only %d messages acknowledged in all rounds", len(acked))
	}
}

func body(rcpt string) string {
	return "Subject: " + rcpt + "\r\n\r\n" + strings.Repeat(rcpt+"\r\n", 2000)
}

// writer puts messages until killed, printing each ID once Put returned.
func writer(dir string) {
	s, err := Open(dir)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	for i := 0; ; i++ {
		rcpt := fmt.Sprintf("r%d-%d@example.net", os.Getpid(), i)
		m := newMessage(rcpt)
		if err := s.Put(m, strings.NewReader(body(rcpt))); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("acked", m.ID)
	}
}

// TestDataOf: DataOf of a message read with Get gives what Data gives
// (the Header, then the data), and a data byte damaged on disk fails the
// read at its end instead of passing.
func TestDataOf(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	body := "Subject: hi\r\n\r\nhello\r\n"
	m := newMessage("a@example.net")
	m.Header = "Received: from client\r\n"
	if err := s.Put(m, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	read := func(f io.ReadCloser, err error) (string, error) {
		if err != nil {
			return "", err
		}
		defer f.Close()
		b, err := io.ReadAll(f)
		return string(b), err
	}
	got, err := s.Get(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	want, err := read(s.Data(m.ID))
	if err != nil || want != m.Header+body {
		t.Fatalf("Data: %q, %v", want, err)
	}
	if d, err := read(s.DataOf(got)); err != nil || d != want {
		t.Errorf("DataOf: %q, %v; want %q", d, err, want)
	}
	name := filepath.Join(s.Dir(), m.ID+".q")
	qf, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(qf, []byte("hello"))
	qf[i] = 'j'
	if err := os.WriteFile(name, qf, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := read(s.DataOf(got)); err == nil {
		t.Error("DataOf read damaged data without an error")
	}
	os.Remove(name)
	if _, err := s.DataOf(got); !errors.Is(err, ErrNotFound) {
		t.Errorf("DataOf of a removed message: %v", err)
	}
}
