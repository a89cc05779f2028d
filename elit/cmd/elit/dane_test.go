package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"elit.local/elit/dane"
	"elit.local/elit/internal/dnsseclab"
)

// servedLeaf returns the certificate the server's submissions port
// serves (no SNI, as many SMTP clients).
func servedLeaf(t *testing.T, s *proc) []*x509.Certificate {
	t.Helper()
	c, err := tls.Dial("tcp", s.subs, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates
}

// tlsaLine returns the TLSA record elit dns-records prints.
func tlsaLine(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errs := runElit("", append([]string{"dns-records", "-domain", "example.org"}, args...)...)
	if code != 0 {
		t.Fatalf("elit dns-records: %d %s", code, errs)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, " TLSA ") {
			return line
		}
	}
	t.Fatalf("elit dns-records prints no TLSA record:\n%s", out)
	return ""
}

// tlsaData is the record data of a TLSA line ("3 1 1 <hex>").
func tlsaData(line string) string {
	line, _, _ = strings.Cut(line, " ;")
	_, data, _ := strings.Cut(line, " TLSA ")
	return strings.TrimSpace(data)
}

// TestACMEStableKey: the certificate Pebble issues, and the one it
// issues again when the cache is gone (as at a renewal), are for the
// server's key, the self-signed certificate's before them: the TLSA
// record that elit dns-records and the status page print stays true.
func TestACMEStableKey(t *testing.T) {
	p := startPebble(t, loopbackDNS(t))
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("pw\n"), 0o600)
	s := startServer(t, "-tls-cert", "", "-tls-key", "", "-http-addr", "127.0.0.1:0", "-http-password-file", pw,
		"-acme", "-acme-directory", p.directory, "-acme-ca-file", p.minica, "-acme-tls-addr", fmt.Sprintf("127.0.0.1:%d", p.tlsPort))
	want := tlsaData(tlsaLine(t, "-hostname", "mx.example.org", "-state", s.state))
	if !strings.HasPrefix(want, "3 1 1 ") {
		t.Fatalf("TLSA %q", want)
	}
	roots := p.root(t)
	var serials []*big.Int
	for round := 1; round <= 2; round++ {
		waitLogCount(t, s, "ACME certificate obtained", round, time.Minute)
		chain := servedLeaf(t, s)
		leaf := chain[0]
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "mx.example.org", Intermediates: pool(chain[1:])}); err != nil {
			t.Fatalf("round %d: not Pebble's certificate: %v", round, err)
		}
		if got := dane.Record(leaf, 3, 1, 1).String(); got != want {
			t.Fatalf("round %d: the ACME certificate's TLSA is %s, want %s", round, got, want)
		}
		serials = append(serials, leaf.SerialNumber)
		// The status page (its port changes at a restart: round 1 only).
		if round == 1 {
			st := fetchStatus(t, s, "pw")
			if st.Cert.Source != "acme" || st.Cert.TLSA != want || !strings.Contains(strings.Join(st.DNSRecord, "\n"), "_25._tcp.mx.example.org. TLSA "+want) {
				t.Fatalf("status page: %+v %q", st.Cert, st.DNSRecord)
			}
		}
		// A new order from scratch: the cached certificate is gone.
		s.stop()
		if err := os.Remove(filepath.Join(s.state, "acme", "mx.example.org")); err != nil {
			t.Fatal(err)
		}
		s.start()
	}
	if serials[0].Cmp(serials[1]) == 0 {
		t.Error("the second order did not issue a new certificate")
	}
	// Before ACME answers, the self-signed certificate serves, for the
	// same key.
	p.stop()
	s.stop()
	os.Remove(filepath.Join(s.state, "acme", "mx.example.org"))
	s.start()
	leaf := servedLeaf(t, s)[0]
	if leaf.Issuer.String() != leaf.Subject.String() || dane.Record(leaf, 3, 1, 1).String() != want {
		t.Errorf("the fallback: issuer %s, TLSA %s, want %s", leaf.Issuer, dane.Record(leaf, 3, 1, 1), want)
	}
}

// TestPosttlsFingerDANE: Postfix's posttls-finger, resolving through the
// DNSSEC lab's unbound (in a mount namespace of its own, with a
// resolv.conf naming it), finds that our MX matches the TLSA record that
// elit dns-records prints, published at _25._tcp of the MX name in a
// signed zone; and does not for a record of another key.
func TestPosttlsFingerDANE(t *testing.T) {
	needTools(t, "unshare", "mount")
	finger := "/usr/sbin/posttls-finger"
	if _, err := os.Stat(finger); err != nil {
		t.Fatal("posttls-finger is not installed: make test installs it (apt-get install postfix)")
	}
	if os.Getuid() != 0 {
		t.Skip("needs root: a mount namespace, port 25 and 53 on loopback")
	}
	// Port 25 on an address of its own (127.0.0.0/8 is all loopback):
	// posttls-finger looks up _25._tcp.HOST.
	mxIP := fmt.Sprintf("127.%d.%d.%d", 1+mrand.IntN(254), mrand.IntN(256), 1+mrand.IntN(254))
	s := startServer(t, "-tls-cert", "", "-tls-key", "", "-hostname", "mx.dane.test", "-mx-addr", mxIP+":25")
	line := tlsaLine(t, "-hostname", "mx.dane.test", "-state", s.state)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	spki, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	other := dane.Record(&x509.Certificate{RawSubjectPublicKeyInfo: spki}, 3, 1, 1)
	lab := dnsseclab.Start(t, dnsseclab.Config{Port53: true, Zones: []dnsseclab.Zone{{
		Name:   "dane.test",
		Signed: true,
		Records: []string{
			"mx.dane.test. 300 IN A " + mxIP,
			line, // as elit dns-records prints it
			"other.dane.test. 300 IN A " + mxIP,
			"_25._tcp.other.dane.test. 300 IN TLSA " + other.String(),
		},
	}}})
	conf := t.TempDir()
	os.WriteFile(filepath.Join(conf, "main.cf"), []byte("dnssec_probe =\n"), 0o644)
	resolv := lab.ResolvConf(t)
	run := func(host string) string {
		t.Helper()
		cmd := exec.Command("unshare", "-m", "sh", "-c", `mount --bind "$1" /etc/resolv.conf && exec "$2" -c -l dane "[$3]"`,
			"sh", resolv, finger, host)
		cmd.Env = append(os.Environ(), "MAIL_CONFIG="+conf)
		timer := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
		defer timer.Stop()
		out, _ := cmd.CombinedOutput()
		t.Logf("posttls-finger [%s]:\n%s", host, out)
		return string(out)
	}
	if out := run("mx.dane.test"); !strings.Contains(out, "Verified TLS connection established") || !strings.Contains(out, "Matched DANE EE certificate at depth 0: "+strings.ToUpper(tlsaData(line))) {
		t.Errorf("posttls-finger against our TLSA record %q:\n%s", line, out)
	}
	if out := run("other.dane.test"); strings.Contains(out, "Verified TLS connection") || !strings.Contains(out, "verification failed") {
		t.Errorf("posttls-finger verified our MX against another key's record:\n%s", out)
	}
}
