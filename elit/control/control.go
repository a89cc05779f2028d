// Package control is how the operator acts on the queue of a server
// (elit queue hold|release|retry|drop, and the REQUIRETLS and
// TLS-Required settings of a message, RFC 8689: requiretls-on|off,
// tlsrequired-no|yes, queue.Message.Apply): one line "COMMAND ID" in and one
// line "ok: ..." or "error: ..." out on the server's control socket
// (STATE/control.sock, mode 0600); when no server runs, the command edits
// the message's envelope on the files itself, under the queue lock.
package control

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"elit.local/elit/config"
)

// LockWait is how long elit serve and an offline command wait for the
// queue lock: long enough for the other's short offline edit to end.
const LockWait = 3 * time.Second

// Handler carries out an operator command (the deliverer does).
type Handler interface {
	Do(ctx context.Context, cmd, id string) (string, error)
}

// Serve answers operator commands on a Unix socket at path until ctx
// ends.
func Serve(ctx context.Context, path string, h Handler, log *slog.Logger) error {
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
			go answer(ctx, c, h)
		}
	}()
	log.Debug("control socket", "path", path)
	return nil
}

// answer carries out the one command of a connection.
func answer(ctx context.Context, c net.Conn, h Handler) {
	defer c.Close()
	deadline := time.Now().Add(time.Minute)
	c.SetDeadline(deadline)
	line, err := bufio.NewReader(io.LimitReader(c, 1024)).ReadString('\n')
	if err != nil {
		return
	}
	cmd, id, _ := strings.Cut(strings.TrimSpace(line), " ")
	// The command gives up when its client would (waiting for a delivery
	// in progress, say), not only at shutdown.
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	out, err := h.Do(ctx, cmd, id)
	if err != nil {
		fmt.Fprintf(c, "error: %v\n", err)
		return
	}
	fmt.Fprintf(c, "ok: %s\n", out)
}

// Command sends an operator command to the server running on state, or,
// when none runs, carries it out on the queue files itself (Offline).
func Command(state config.State, cmd, id string) (string, error) {
	c, err := net.DialTimeout("unix", state.ControlSocket(), 5*time.Second)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
		return Offline(state, cmd, id)
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
