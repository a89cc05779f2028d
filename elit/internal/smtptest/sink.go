package smtptest

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"elit.local/elit/internal/testlib"
	"elit.local/internal/freeport"
)

// Sink is Postfix's smtp-sink on loopback, a real destination MX: it
// counts its sessions (-c) and appends what it accepts to Dump (-D).
type Sink struct {
	Addr string // host:port it listens on
	Dump string // the file of the messages it accepted
	cmd  *exec.Cmd
	out  testlib.Buffer // its standard output: the counters
}

// StartSink starts smtp-sink on addr ("": a free port on 127.0.0.1)
// with more args, waits until it has answered a probe, and stops it when
// the test ends. make test installs smtp-sink (Debian's postfix).
func StartSink(t testing.TB, addr string, args ...string) *Sink {
	t.Helper()
	if _, err := exec.LookPath("smtp-sink"); err != nil {
		t.Fatal("smtp-sink is not installed: make test installs it (apt-get install postfix)")
	}
	// smtp-sink writes as nobody, who cannot enter t.TempDir()'s parent.
	dir, err := os.MkdirTemp("", "elit-sink")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777)
	if addr == "" {
		addr = "127.0.0.1:" + strconv.Itoa(freeport.Get(t))
	}
	s := &Sink{Addr: addr, Dump: filepath.Join(dir, "dump")}
	s.cmd = exec.Command("smtp-sink", append(append([]string{"-u", "nobody", "-c", "-D", s.Dump}, args...), addr, "100")...)
	s.cmd.Stdout = &s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	for range 250 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			s.WaitSessions(t, 1) // the probe
			return s
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("smtp-sink did not start on %s", addr)
	return nil
}

// Stop stops the sink (a destination that goes down).
func (s *Sink) Stop() {
	if s.cmd.Process != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	}
}

var sinkCounters = regexp.MustCompile(`sess=(\d+) quit=(\d+) mesg=(\d+)`)

// Sessions is the number of sessions that have ended, and of messages
// accepted, as the sink counts them (StartSink's probe included).
func (s *Sink) Sessions() (sessions, messages int) {
	m := sinkCounters.FindAllStringSubmatch(s.out.String(), -1)
	if len(m) == 0 {
		return 0, 0
	}
	last := m[len(m)-1]
	sessions, _ = strconv.Atoi(last[1])
	messages, _ = strconv.Atoi(last[3])
	return sessions, messages
}

// WaitSessions waits until n sessions have ended.
func (s *Sink) WaitSessions(t testing.TB, n int) {
	t.Helper()
	for range 1000 {
		if got, _ := s.Sessions(); got >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	got, _ := s.Sessions()
	t.Fatalf("the sink counted %d sessions, want %d", got, n)
}
