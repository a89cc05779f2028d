// Package dnsseclab is a DNSSEC laboratory on loopback for tests: an
// authoritative server (miekg/dns, in the test's process) serving zones
// it signs itself (RFC 4033 to 4035: KSK and ZSK, DNSKEY, RRSIG, NSEC),
// and Debian's unbound, validating with the signed zones' keys as its
// trust anchors and asking only that server. A client of unbound sees
// what a client of a validating resolver on the Internet sees: the AD
// bit on the signed zones' answers, none on the unsigned zones', and
// SERVFAIL for bogus ones. The AD bit comes from unbound's validation:
// the authoritative server never sets it.
//
// unbound is configured to send queries only to 127.0.0.1, from
// 127.0.0.1: a name outside the lab's zones is refused, never looked up
// elsewhere.
package dnsseclab

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"elit.local/elit/dns/dnstest"
	"elit.local/internal/freeport"
)

// Zone is one zone of the lab.
type Zone struct {
	// Name is the zone's apex ("dane.test"). The lab adds its SOA and
	// NS records.
	Name string
	// Signed zones are signed, and their keys are unbound's trust
	// anchors; the others are insecure (no trust anchor covers them).
	Signed bool
	// Records in zone-file form, owner names absolute:
	// "mx.dane.test. 300 IN A 127.0.0.1".
	Records []string
	// Bogus are names of a signed zone whose signatures are broken:
	// unbound answers SERVFAIL for their records.
	Bogus []string
}

// Config is what the lab serves.
type Config struct {
	Zones []Zone
	// Port53 puts unbound on port 53 of an address of its own in
	// 127.0.0.0/8, for programs that read /etc/resolv.conf (which has
	// no port): see ResolvConf. It needs root.
	Port53 bool
}

// Lab is a running lab.
type Lab struct {
	// Resolver is unbound's address (host:port): the validating
	// resolver to ask.
	Resolver string
	// Auth is the authoritative server's address: it answers with the
	// records and their signatures, never with the AD bit.
	Auth string
	// DS are the DS records of the signed zones (SHA-256, RFC 4509), as
	// unbound's trust anchors, by zone name.
	DS  map[string]string
	dir string
}

// Start starts the lab; it stops when the test ends. unbound must be
// installed (make test installs it).
func Start(t testing.TB, cfg Config) *Lab {
	t.Helper()
	unbound, err := exec.LookPath("unbound")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/unbound"); serr != nil {
			t.Fatalf("unbound is not installed: make test installs it (apt-get install unbound)")
		}
		unbound = "/usr/sbin/unbound"
	}
	now := time.Now()
	zones := map[string]*zone{}
	lab := &Lab{DS: map[string]string{}, dir: t.TempDir()}
	for _, zc := range cfg.Zones {
		z, err := newZone(zc, now)
		if err != nil {
			t.Fatalf("dnsseclab: %v", err)
		}
		zones[z.name] = z
		if z.signed {
			lab.DS[strings.TrimSuffix(z.name, ".")] = strings.Join(strings.Fields(z.ksk.ToDS(mdns.SHA256).String()), " ")
		}
	}
	auth, stop, err := dnstest.Listen("127.0.0.1:0", handler(zones))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	lab.Auth = auth
	for try := 0; ; try++ {
		err := lab.startUnbound(t, unbound, cfg, zones)
		if err == nil {
			return lab
		}
		if try == 5 {
			t.Fatalf("dnsseclab: unbound: %v", err)
		}
	}
}

// handler answers as the authoritative server of zones: the zone of the
// longest suffix of the name asked; REFUSED for a name in none.
func handler(zones map[string]*zone) mdns.Handler {
	return mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		if len(r.Question) != 1 {
			m.Rcode = mdns.RcodeFormatError
			w.WriteMsg(m)
			return
		}
		q := r.Question[0]
		do := false
		if opt := r.IsEdns0(); opt != nil {
			do = opt.Do()
			m.SetEdns0(1232, do)
		}
		name := strings.ToLower(q.Name)
		var z *zone
		for n := name; ; {
			if z = zones[n]; z != nil || n == "." {
				break
			}
			labels := mdns.SplitDomainName(n)
			n = mdns.Fqdn(strings.Join(labels[1:], "."))
		}
		if z == nil {
			m.Rcode = mdns.RcodeRefused
			w.WriteMsg(m)
			return
		}
		m.Authoritative = true
		z.answer(m, q, do)
		if len(m.Answer)+len(m.Ns) > 0 && w.RemoteAddr().Network() == "udp" {
			m.Truncate(1232)
		}
		w.WriteMsg(m)
	})
}

// startUnbound writes unbound's configuration and starts it, once it
// answers.
func (lab *Lab) startUnbound(t testing.TB, unbound string, cfg Config, zones map[string]*zone) error {
	t.Helper()
	host, port := "127.0.0.1", freeport.Get(t)
	if cfg.Port53 {
		host, port = fmt.Sprintf("127.%d.%d.%d", 1+rand.IntN(254), rand.IntN(256), 1+rand.IntN(254)), 53
	}
	authHost, authPort, _ := net.SplitHostPort(lab.Auth)
	var b strings.Builder
	fmt.Fprintf(&b, `server:
	interface: %s
	port: %d
	do-ip4: yes
	do-ip6: no
	do-udp: yes
	do-tcp: yes
	username: ""
	chroot: ""
	directory: %q
	pidfile: %q
	use-syslog: no
	logfile: ""
	verbosity: 1
	val-log-level: 2
	num-threads: 1
	so-reuseport: no
	access-control: 127.0.0.0/8 allow
	# Queries go to the lab's server only, from loopback.
	do-not-query-localhost: no
	outgoing-interface: 127.0.0.1
	module-config: "validator iterator"
	qname-minimisation: no
	prefetch: no
	ede: yes
	val-permissive-mode: no
	harden-dnssec-stripped: yes
`, host, port, lab.dir, filepath.Join(lab.dir, "unbound.pid"))
	seen := map[string]bool{}
	for name, z := range zones {
		// unbound answers some names itself (test., invalid., RFC
		// 6761): not the lab's.
		labels := mdns.SplitDomainName(name)
		for i := range labels {
			if n := mdns.Fqdn(strings.Join(labels[i:], ".")); !seen[n] {
				seen[n] = true
				fmt.Fprintf(&b, "\tlocal-zone: %q nodefault\n", n)
			}
		}
		if z.signed {
			fmt.Fprintf(&b, "\ttrust-anchor: \"%s\"\n", strings.Join(strings.Fields(z.ksk.ToDS(mdns.SHA256).String()), " "))
		}
	}
	names := []string{"."}
	for name := range zones {
		names = append(names, name)
	}
	for _, name := range names {
		fmt.Fprintf(&b, "stub-zone:\n\tname: %q\n\tstub-addr: %s@%s\n", name, authHost, authPort)
	}
	b.WriteString("remote-control:\n\tcontrol-enable: no\n")
	conf := filepath.Join(lab.dir, "unbound.conf")
	if err := os.WriteFile(conf, []byte(b.String()), 0o600); err != nil {
		return err
	}
	logPath := filepath.Join(lab.dir, "unbound.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(unbound, "-d", "-c", conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	addr := net.JoinHostPort(host, fmt.Sprint(port))
	ready := func() bool {
		m := new(mdns.Msg)
		m.SetQuestion(".", mdns.TypeNS)
		c := &mdns.Client{Timeout: 200 * time.Millisecond}
		_, _, err := c.ExchangeContext(context.Background(), m, addr)
		return err == nil
	}
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-exited:
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("exited (%v):\n%s", err, log)
		default:
		}
		if ready() {
			lab.Resolver = addr
			t.Cleanup(func() {
				cmd.Process.Kill()
				<-exited
				if t.Failed() {
					log, _ := os.ReadFile(logPath)
					t.Logf("unbound's log:\n%s", log)
				}
			})
			return nil
		}
	}
	cmd.Process.Kill()
	<-exited
	log, _ := os.ReadFile(logPath)
	return fmt.Errorf("no answer from %s:\n%s", addr, log)
}

// ResolvConf writes a resolv.conf(5) naming the lab's resolver, which a
// program reading /etc/resolv.conf can be given with a bind mount in a
// mount namespace of its own (unshare -m). The resolver must be on port
// 53 (Config.Port53). "options trust-ad" makes glibc pass the AD bit on
// (glibc 2.31 clears it otherwise).
func (lab *Lab) ResolvConf(t testing.TB) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(lab.Resolver)
	if port != "53" {
		t.Fatal("dnsseclab: ResolvConf needs Config.Port53")
	}
	path := filepath.Join(lab.dir, "resolv.conf")
	if err := os.WriteFile(path, []byte("nameserver "+host+"\noptions trust-ad\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
