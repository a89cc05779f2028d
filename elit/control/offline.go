package control

import (
	"errors"
	"fmt"

	"elit.local/elit/config"
	"elit.local/elit/queue"
)

// Offline carries out an operator command (queue.Message.Apply) on the
// queue files while no server runs, holding the queue lock so that none starts meanwhile. It
// only edits envelopes: the bounce of a dropped message is left to the
// server, which makes it with its real host name and user database when
// it next starts. When a server holds the lock but its control socket does
// not answer, nothing is touched.
func Offline(state config.State, cmd, id string) (string, error) {
	dir := state.Queue()
	lock, err := queue.LockDir(dir, LockWait)
	if errors.Is(err, queue.ErrLocked) {
		return "", fmt.Errorf("%w: a server seems to run on %s, but its control socket %s does not answer; nothing changed (try again, or stop the server)", err, state.Dir, state.ControlSocket())
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
	case "hold", "requiretls-on", "requiretls-off", "tlsrequired-no", "tlsrequired-yes":
		return fmt.Sprintf("%s %s: %d recipients; no server running: queue files edited", cmd, id, n), nil
	}
	return fmt.Sprintf("%s %s: %d recipients; no server running: queue files edited, due when elit serve next starts", cmd, id, n), nil
}
