package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"elit.local/elit/deliver"
	"elit.local/elit/lists"
	"elit.local/elit/queue"
)

// controlSocket is where elit serve takes operator commands.
func controlSocket(state string) string { return filepath.Join(state, "control.sock") }

// lockWait is how long elit serve and an offline elit queue wait for the
// queue lock: long enough for the other's short offline edit to end.
const lockWait = 3 * time.Second

// queueCommand sends an operator command to the running server, or, when
// none runs, carries it out on the queue files itself (offlineCommand).
func queueCommand(state, cmd, id string) (string, error) {
	c, err := net.DialTimeout("unix", controlSocket(state), 5*time.Second)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
		return offlineCommand(state, cmd, id)
	}
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	fmt.Fprintf(c, "%s %s\n", cmd, id)
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("control socket: %w", err)
	}
	line = strings.TrimSpace(line)
	if msg, ok := strings.CutPrefix(line, "error: "); ok {
		return "", errors.New(msg)
	}
	return strings.TrimPrefix(line, "ok: "), nil
}

// offlineCommand carries out an operator command on the queue files while
// no server runs, holding the queue lock so that none starts meanwhile. It
// only edits envelopes: the bounce of a dropped message is left to the
// server, which makes it with its real host name and user database when
// it next starts. When a server holds the lock but its control socket does
// not answer, nothing is touched.
func offlineCommand(state, cmd, id string) (string, error) {
	dir := filepath.Join(state, "queue")
	lock, err := queue.LockDir(dir, lockWait)
	if errors.Is(err, queue.ErrLocked) {
		return "", fmt.Errorf("%w: a server seems to run on %s, but its control socket %s does not answer; nothing changed (try again, or stop the server)", err, state, controlSocket(state))
	}
	if err != nil {
		return "", err
	}
	defer lock.Unlock()
	q, err := queue.Attach(dir) // not Open: cleaning up is the server's job
	if err != nil {
		return "", err
	}
	m, err := q.Get(id)
	if err != nil {
		return "", err
	}
	// Only the envelope changes: a drop leaves recipients failed and not
	// yet reported, which the server takes as a bounce to send.
	n, err := m.Apply(cmd)
	if err != nil {
		return "", err
	}
	if n == 0 {
		return fmt.Sprintf("%s %s: 0 recipients (no server running; nothing changed)", cmd, id), nil
	}
	if (cmd == "drop" || cmd == "drop-quietly") && m.Done() {
		if err := q.Remove(id); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s %s: %d recipients; no server running: removed from the queue, nobody to tell", cmd, id, n), nil
	}
	if err := q.Update(m); err != nil {
		return "", err
	}
	switch cmd {
	case "drop", "drop-quietly":
		return fmt.Sprintf("%s %s: %d recipients marked failed; no server running: elit serve sends the bounce and removes the message at its next start", cmd, id, n), nil
	case "hold":
		return fmt.Sprintf("%s %s: %d recipients; no server running: queue files edited", cmd, id, n), nil
	}
	return fmt.Sprintf("%s %s: %d recipients; no server running: queue files edited, due when elit serve next starts", cmd, id, n), nil
}

// serveControl answers operator commands on the control socket: one line
// "COMMAND ID" in, one line "ok: ..." or "error: ..." out.
func serveControl(ctx context.Context, state string, d *deliver.Deliverer, log *slog.Logger) error {
	path := controlSocket(state)
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	os.Chmod(path, 0o600)
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(time.Minute))
				line, err := bufio.NewReader(io.LimitReader(c, 1024)).ReadString('\n')
				if err != nil {
					return
				}
				cmd, id, _ := strings.Cut(strings.TrimSpace(line), " ")
				out, err := d.Do(ctx, cmd, id)
				if err != nil {
					fmt.Fprintf(c, "error: %v\n", err)
					return
				}
				fmt.Fprintf(c, "ok: %s\n", out)
			}()
		}
	}()
	log.Debug("control socket", "path", path)
	return nil
}

// cmdQueue reads the queue: list (one line a message) or show ID (the
// envelope and delivery state as stored), and acts on it: hold, release,
// retry, drop — through the running server's control socket, or on the
// files when no server runs (offlineCommand).
func cmdQueue(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("elit queue", flag.ContinueOnError)
	fs.SetOutput(stderr)
	state := fs.String("state", defaultState(), "the state `directory` of elit serve (the queue is its queue/)")
	noBounce := fs.Bool("no-bounce", false, "drop: do not tell the sender")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: elit queue [-state DIR] list | show ID | hold ID | release ID | retry ID | [-no-bounce] drop ID")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	dir := filepath.Join(*state, "queue")
	if _, err := os.Stat(dir); err != nil {
		fmt.Fprintf(stderr, "elit queue: %v\n", err)
		return exitFailure
	}
	if fs.NArg() == 2 && slices.Contains([]string{"hold", "release", "retry", "drop"}, fs.Arg(0)) {
		cmd := fs.Arg(0)
		if cmd == "drop" && *noBounce {
			cmd = "drop-quietly"
		}
		out, err := queueCommand(*state, cmd, fs.Arg(1))
		if err != nil {
			fmt.Fprintf(stderr, "elit queue: %v\n", err)
			return exitFailure
		}
		fmt.Fprintln(stdout, out)
		return exitOK
	}
	s, err := queue.Attach(dir)
	if err != nil {
		fmt.Fprintf(stderr, "elit queue: %v\n", err)
		return exitFailure
	}
	switch {
	case fs.NArg() == 1 && fs.Arg(0) == "list":
		msgs, err := s.List()
		for _, m := range msgs {
			pending := 0
			for _, r := range m.Recipients {
				if r.Status == queue.Pending {
					pending++
				}
			}
			from := m.From
			if from == "" {
				from = "<>"
			}
			fmt.Fprintf(stdout, "%s  %7d bytes  from %s  %d recipients, %d pending\n", m.ID, m.Size, from, len(m.Recipients), pending)
		}
		if err != nil {
			fmt.Fprintf(stderr, "elit queue: %v\n", err)
			return exitFailure
		}
		return exitOK
	case fs.NArg() == 2 && fs.Arg(0) == "show":
		m, err := s.Get(fs.Arg(1))
		if err != nil {
			fmt.Fprintf(stderr, "elit queue: %v\n", err)
			return exitFailure
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(m)
		return exitOK
	}
	fs.Usage()
	return exitUsage
}

// cmdLists prints the bounces counted for each list member.
func cmdLists(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("elit lists", flag.ContinueOnError)
	fs.SetOutput(stderr)
	state := fs.String("state", defaultState(), "the state `directory` of elit serve")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return exitUsage
	}
	b, err := lists.Open(filepath.Join(*state, "list-bounces.json"))
	if err != nil {
		fmt.Fprintf(stderr, "elit lists: %v\n", err)
		return exitFailure
	}
	for _, l := range lists.Format(b.Read()) {
		fmt.Fprintln(stdout, l)
	}
	return exitOK
}
