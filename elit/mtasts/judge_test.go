package mtasts

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"elit.local/elit/dns"
	"elit.local/elit/dns/dnstest"
)

// judgeEnv marks the test process that runs inside the namespaces.
const judgeEnv = "ELIT_MTASTS_JUDGE_INSIDE"

// TestJudgeMTASTSQuery: a second implementation, Debian's mta-sts-query
// (postfix-mta-sts-resolver), does the whole discovery (TXT record, then
// HTTPS with verified TLS) of policies served by our Handler and by
// other loopback servers, and agrees with our Cache on each: valid, or
// not to be used. It resolves through the system's resolver, so it runs
// in a network namespace of its own (nothing but loopback: no query can
// leave the machine) and a mount namespace where /etc/resolv.conf names
// our DNS server on 127.0.0.1:53; it trusts our test CA through
// SSL_CERT_FILE. It needs root and unshare(1).
func TestJudgeMTASTSQuery(t *testing.T) {
	if os.Getenv(judgeEnv) == "1" {
		judgeInside(t)
		return
	}
	if _, err := exec.LookPath("mta-sts-query"); err != nil {
		t.Skip("mta-sts-query is not installed (Debian package postfix-mta-sts-resolver)")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and unshare(1) for the namespaces")
	}
	if out, err := exec.Command(unshare, "--mount", "--net", "true").CombinedOutput(); err != nil {
		t.Skipf("cannot make namespaces here (a container without CAP_SYS_ADMIN?): %v %s", err, out)
	}
	cmd := exec.Command(unshare, "--mount", "--net", "--propagation", "private", "--",
		os.Args[0], "-test.run=^TestJudgeMTASTSQuery$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), judgeEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("inside the namespaces: %v\n%s", err, out)
	}
	t.Logf("inside the namespaces:\n%s", out)
}

// judgeInside runs in the namespaces: loopback up, resolv.conf replaced,
// DNS on 127.0.0.1:53, HTTPS on 127.0.0.1:443.
func judgeInside(t *testing.T) {
	if err := loopbackUp(); err != nil {
		t.Fatalf("bringing lo up: %v", err)
	}
	dir := t.TempDir()
	resolvConf := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(resolvConf, []byte("nameserver 127.0.0.1\noptions timeout:2 attempts:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(resolvConf, "/etc/resolv.conf", "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind-mounting resolv.conf: %v", err)
	}

	ours, err := NewPolicy(Enforce, 7*24*time.Hour, "mx.example.org", "mx2.example.org")
	if err != nil {
		t.Fatal(err)
	}
	lab := readOracle(t, "lab-example.com-policy.txt")
	type site struct {
		domain string
		id     string
		serve  http.Handler
		valid  bool // what both must say
	}
	text := func(ctype, body string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", ctype)
			fmt.Fprint(w, body)
		})
	}
	sites := []site{
		{"example.org", ours.ID(), Handler(ours, "example.org"), true},
		{"lab.example", "20260501", text("text/plain", lab), true},
		{"testing.example", "t1", text("text/plain; charset=utf-8", policyText(Testing, 86400, "*.mx.testing.example")), true},
		{"none.example", "n1", text("text/plain", policyText(None, 86400)), true},
		{"html.example", "h1", text("text/html", lab), false},
		{"redirect.example", "r1", http.RedirectHandler("https://lab.example/.well-known/mta-sts.txt", http.StatusFound), false},
		{"missing.example", "m1", http.NotFoundHandler(), false},
		{"nomx.example", "x1", text("text/plain", policyText(Enforce, 86400)), false},
		{"maxage.example", "a1", text("text/plain", policyText(Enforce, 31557601, "mx.maxage.example")), false},
		{"uncertified.example", "u1", text("text/plain", lab), false}, // not in the certificate
	}
	var names []string
	zone := []string{"mx.example.org. 300 IN A 127.0.0.1"}
	mux := http.NewServeMux()
	for _, s := range sites {
		if s.domain != "uncertified.example" {
			names = append(names, "mta-sts."+s.domain)
		}
		zone = append(zone,
			fmt.Sprintf(`_mta-sts.%s. 300 IN TXT "v=STSv1; id=%s;"`, s.domain, s.id),
			fmt.Sprintf("mta-sts.%s. 300 IN A 127.0.0.1", s.domain))
		mux.Handle("mta-sts."+s.domain+"/", s.serve)
	}
	handler, err := dnstest.Handler(dnstest.Zone{Records: zone})
	if err != nil {
		t.Fatal(err)
	}
	dnsAddr, stop, err := dnstest.Listen("127.0.0.1:53", handler)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()

	cert, pool, caPEM := testCA(t, names...)
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:443", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: log.New(io.Discard, "", 0)} // the refused certificate is expected
	go hs.Serve(l)
	defer hs.Close()

	// Ours, the production way: the Fetcher finds the policy hosts'
	// addresses through our DNS client and dials port 443.
	resolver := &dns.Client{Server: dnsAddr, Timeout: 5 * time.Second}
	cache, err := Open(Config{Dir: filepath.Join(dir, "cache"), Resolver: resolver,
		Fetcher: &Fetcher{Roots: pool, Resolver: resolver, Timeout: 10 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	result := regexp.MustCompile(`^\(<STSFetchResult\.([A-Z_]+): \d>, (.*)\)$`)
	for _, s := range sites {
		r := cache.Policy(context.Background(), s.domain)
		oursValid := r.Policy != nil
		if oursValid != s.valid || oursValid && r.ID != s.id {
			t.Errorf("%s: ours: %+v (%v), want valid %v with id %s", s.domain, r.Policy, r.Err, s.valid, s.id)
		}

		cmd := exec.Command("mta-sts-query", s.domain)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "SSL_CERT_FILE=" + caFile, "LANG=C.UTF-8"}
		out, err := cmd.CombinedOutput()
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		m := result.FindStringSubmatch(lines[len(lines)-1])
		if err != nil || m == nil {
			t.Errorf("%s: mta-sts-query: %v\n%s", s.domain, err, out)
			continue
		}
		judgeValid := m[1] == "VALID"
		if judgeValid != s.valid || !judgeValid && m[1] != "FETCH_ERROR" {
			t.Errorf("%s: mta-sts-query says %s, we say valid %v (%v)\n%s", s.domain, m[1], oursValid, r.Err, out)
			continue
		}
		if judgeValid {
			if !strings.Contains(m[2], "'"+s.id+"'") || !strings.Contains(m[2], "'mode': '"+string(r.Mode())+"'") {
				t.Errorf("%s: mta-sts-query read %s; we read id %s mode %s", s.domain, m[2], r.ID, r.Mode())
			}
			for _, mx := range r.MXPatterns() {
				if !strings.Contains(m[2], "'"+mx+"'") {
					t.Errorf("%s: mta-sts-query read %s, without our mx %s", s.domain, m[2], mx)
				}
			}
		}
		t.Logf("%s: mta-sts-query %s; ours: mode %s, failure %q", s.domain, m[1], r.Mode(), r.Failure)
	}

	// The id we publish is the one the judge keeps: asked with it, it
	// finds the policy unchanged.
	out, err := exec.Command("mta-sts-query", "example.org", ours.ID()).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "NOT_CHANGED") {
		t.Errorf("mta-sts-query example.org %s: %v\n%s", ours.ID(), err, out)
	}
}

// loopbackUp brings up lo, down in a new network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return err
	}
	// The address is there at once; wait for the route to take it.
	for range 100 {
		if c, err := net.Dial("udp", "127.0.0.1:9"); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("127.0.0.1 unreachable")
}
