package control

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"elit.local/elit/config"
	"elit.local/elit/queue"
)

// handler answers as the deliverer does, and records the commands.
type handler struct{ got []string }

func (h *handler) Do(_ context.Context, cmd, id string) (string, error) {
	h.got = append(h.got, cmd+" "+id)
	if id == "missing" {
		return "", errors.New("no such message")
	}
	return cmd + " " + id + ": 1 recipients", nil
}

// TestCommand: a command reaches the running server's handler through the
// socket, and its answer or error comes back; with no server, the command
// edits the files.
func TestCommand(t *testing.T) {
	st := config.State{Dir: t.TempDir()}
	q, err := queue.Open(st.Queue())
	if err != nil {
		t.Fatal(err)
	}
	m := &queue.Message{From: "x@example.net", Recipients: []queue.Recipient{{Address: "a@example.net"}}}
	if err := q.Put(m, strings.NewReader("hello\r\n")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &handler{}
	if err := Serve(ctx, st.ControlSocket(), h, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(st.ControlSocket()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket %v, %v; want mode 0600", fi, err)
	}
	if out, err := Command(st, "hold", m.ID); err != nil || out != "hold "+m.ID+": 1 recipients" {
		t.Errorf("hold: %q, %v", out, err)
	}
	if _, err := Command(st, "retry", "missing"); err == nil || err.Error() != "no such message" {
		t.Errorf("retry of a missing message: %v", err)
	}
	if len(h.got) != 2 || h.got[0] != "hold "+m.ID {
		t.Errorf("the handler got %q", h.got)
	}
	if got, _ := q.Get(m.ID); got.Recipients[0].Status != queue.Pending {
		t.Errorf("the server's command edited the files: %s", got.Recipients[0].Status)
	}

	cancel() // the server stops: the socket goes
	for i := 0; ; i++ {
		if _, err := os.Stat(st.ControlSocket()); err != nil {
			break
		}
		if i == 100 {
			t.Fatal("the control socket stays after the server stopped")
		}
		time.Sleep(10 * time.Millisecond)
	}
	out, err := Command(st, "hold", m.ID)
	if err != nil || !strings.Contains(out, "no server running") {
		t.Errorf("hold with no server: %q, %v", out, err)
	}
	if got, _ := q.Get(m.ID); got.Recipients[0].Status != queue.Held {
		t.Errorf("hold with no server: %s", got.Recipients[0].Status)
	}
}
