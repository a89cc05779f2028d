package main

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"elit.local/elit/dns/dnstest"
)

// proc is a running elit serve.
type proc struct {
	t                  *testing.T
	cmd                *exec.Cmd
	dir, state, dbPath string
	cert               string
	mx, sub, subs      string
	args               []string
	mu                 sync.Mutex
	log                bytes.Buffer
	done               chan struct{}
}

var listenRe = regexp.MustCompile(`msg=listening mode=(\w+) addr=(\S+)`)

// startServer starts elit with the test database, a test certificate and
// fast failure delays; args are added (and win).
func startServer(t *testing.T, args ...string) *proc {
	t.Helper()
	dir := t.TempDir()
	s := &proc{t: t, dir: dir, state: filepath.Join(dir, "state"), dbPath: filepath.Join(dir, "users.json")}
	if err := os.WriteFile(s.dbPath, testDB(t), 0o600); err != nil {
		t.Fatal(err)
	}
	var key string
	s.cert, key = testCert(t, dir)
	s.args = append([]string{"serve", "-domain", "example.org", "-hostname", "mx.example.org",
		"-db-json", s.dbPath, "-state", s.state, "-tls-cert", s.cert, "-tls-key", key,
		"-mx-addr", "127.0.0.1:0", "-submission-addr", "127.0.0.1:0", "-submissions-addr", "127.0.0.1:0",
		"-auth-failure-delay", "1ms", "-db-check-interval", "0", "-deliver=false",
		"-resolver", dnstest.Serve(t, dnstest.Zone{})}, args...) // a DNS knowing no name
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *proc) start() {
	t := s.t
	t.Helper()
	s.cmd = exec.Command(elitBinary(t), s.args...)
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.done = make(chan struct{})
	addrs := make(chan [2]string, 3)
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.log.WriteString(line + "\n")
			s.mu.Unlock()
			if m := listenRe.FindStringSubmatch(line); m != nil {
				addrs <- [2]string{m[1], m[2]}
			}
		}
		io.Copy(io.Discard, stderr)
		s.cmd.Wait()
	}()
	deadline := time.After(20 * time.Second)
	for n := 0; n < 3; n++ {
		select {
		case a := <-addrs:
			switch a[0] {
			case "mx":
				s.mx = a[1]
			case "submission":
				s.sub = a[1]
			case "submissions":
				s.subs = a[1]
			}
		case <-s.done:
			t.Fatalf("elit exited: %s\n%s", s.cmd.ProcessState, s.logText())
		case <-deadline:
			t.Fatalf("elit did not start listening:\n%s", s.logText())
		}
	}
}

func (s *proc) logText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

func (s *proc) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

func (s *proc) kill() {
	s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

func (s *proc) port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// swaks runs swaks against addr with args.
func (s *proc) swaks(addr string, args ...string) (int, string) {
	s.t.Helper()
	return runTool(s.t, "", "swaks", append([]string{"--server", addr, "--helo", "client.example.net",
		"--timeout", "30", "--tls-verify", "--tls-ca-path", s.cert}, args...)...)
}
