package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// dnsServer serves a test zone on loopback: each domain has the MX
// "mx.DOMAIN", whose A record is the given loopback address, so that
// "remote" domains are sinks on this machine.
func dnsServer(t *testing.T, zone map[string]string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		name := strings.TrimSuffix(strings.ToLower(q.Name), ".")
		hdr := mdns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: mdns.ClassINET, Ttl: 60}
		if _, ok := zone[name]; ok {
			if q.Qtype == mdns.TypeMX {
				m.Answer = append(m.Answer, &mdns.MX{Hdr: hdr, Preference: 10, Mx: "mx." + name + "."})
			}
		} else if ip, ok := zone[strings.TrimPrefix(name, "mx.")]; ok && strings.HasPrefix(name, "mx.") {
			if q.Qtype == mdns.TypeA {
				m.Answer = append(m.Answer, &mdns.A{Hdr: hdr, A: net.ParseIP(ip)})
			}
		} else {
			m.Rcode = mdns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	srv := &mdns.Server{PacketConn: pc, Handler: h}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

// sink is Postfix's smtp-sink as a destination MX.
type sink struct {
	cmd  *exec.Cmd
	dump string
	addr string
}

func startSink(t *testing.T, addr string, args ...string) *sink {
	t.Helper()
	needTools(t, "smtp-sink")
	dir, err := os.MkdirTemp("", "elit-sink")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777) // smtp-sink writes as nobody
	t.Cleanup(func() { os.RemoveAll(dir) })
	if addr == "" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = l.Addr().String()
		l.Close()
	}
	s := &sink{dump: filepath.Join(dir, "dump"), addr: addr}
	s.cmd = exec.Command("smtp-sink", append(append([]string{"-u", "nobody", "-D", s.dump}, args...), addr, "100")...)
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	for range 100 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return s
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("smtp-sink did not start on %s", addr)
	return nil
}

func (s *sink) stop() {
	if s.cmd.Process != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	}
}

func (s *sink) messages() []string {
	b, _ := os.ReadFile(s.dump)
	var out []string
	for _, m := range strings.Split(string(b), "X-Client-Addr: ") {
		if strings.TrimSpace(m) != "" {
			out = append(out, "X-Client-Addr: "+m)
		}
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 300 {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// deliveryServer starts elit delivering to the sink through the test DNS.
func deliveryServer(t *testing.T, resolver, port string, args ...string) *server {
	return startServer(t, append([]string{"-deliver=true", "-resolver", resolver, "-delivery-port", port,
		"-retry-first", "300ms", "-retry-max", "1s"}, args...)...)
}

// TestDeliverForward: a message to two forwarding names reaches both
// mailboxes' MX (the sink) with an SRS sender, and leaves the queue.
func TestDeliverForward(t *testing.T) {
	sk := startSink(t, "")
	_, port, _ := net.SplitHostPort(sk.addr)
	resolver := dnsServer(t, map[string]string{"example.com": "127.0.0.1", "example.net": "127.0.0.1"})
	s := deliveryServer(t, resolver, port, "-metrics-addr", "127.0.0.1:0")
	needTools(t, "swaks")
	if code, out := s.swaks(s.mx, "--from", "sender@example.net", "--to", "din@example.org,bob@example.org"); code != 0 {
		t.Fatalf("swaks: %d\n%s", code, out)
	}
	waitFor(t, "two deliveries", func() bool { return len(sk.messages()) == 2 })
	all := strings.Join(sk.messages(), "")
	if !strings.Contains(all, "X-Rcpt-Args: <romain@example.com>") || !strings.Contains(all, "X-Rcpt-Args: <bob@example.net>") ||
		!strings.Contains(all, "X-Helo-Args: mx.example.org") || !strings.Contains(all, "by mx.example.org (Elit)") {
		t.Errorf("sink got:\n%s", all)
	}
	q := openQueue(t, s)
	waitFor(t, "an empty queue", func() bool { m, _ := q.List(); return len(m) == 0 })
	waitLog(t, s, "msg=delivered")

	// The metrics say so.
	addr := regexp.MustCompile(`msg="metrics listening" addr=(\S+)`).FindStringSubmatch(s.logText())
	if addr == nil {
		t.Fatalf("no metrics address in the log")
	}
	resp, err := http.Get("http://" + addr[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`elit_deliveries_total{result="delivered"} 2`, `elit_received_messages_total{listener="mx"} 1`,
		"elit_queue_messages 0", "# TYPE elit_delivery_seconds_total counter"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}

	// The forwarded message's envelope sender is an SRS0 address at our
	// domain that encodes the original sender.
	m := srsRe.FindStringSubmatch(all)
	if m == nil || m[1] != "example.net" || m[2] != "sender" {
		t.Fatalf("no SRS sender in:\n%s", all)
	}
	srsAddr := m[0]
	// A bounce to it goes back to the original sender; a forged one is refused.
	c := dialRaw(t, s.mx)
	c.send("EHLO mx.example.com\r\nMAIL FROM:<>\r\nRCPT TO:<" + strings.Replace(srsAddr, "=sender@", "=mallory@", 1) + ">\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("550 5.1.1")
	c.send("RCPT TO:<" + srsAddr + ">\r\nDATA\r\n")
	c.expect("250")
	c.expect("354")
	c.send("Subject: bounce\r\n\r\nreturned\r\n.\r\n")
	c.expect("250")
	waitFor(t, "the bounce at the original sender", func() bool { return len(sk.messages()) == 3 })
	if last := sk.messages()[2]; !strings.Contains(last, "X-Mail-Args: <>") || !strings.Contains(last, "X-Rcpt-Args: <sender@example.net>") {
		t.Errorf("bounce forwarded as:\n%s", last)
	}
}

var srsRe = regexp.MustCompile(`SRS0=[A-Z2-7]{13}=[A-Z2-7]{2}=([^=]+)=([^@]+)@example\.org`)

// TestDeliverRetry: a destination answering 4xx twice gets the message on
// the third attempt.
func TestDeliverRetry(t *testing.T) {
	sk := startSink(t, "", "-r", "RCPT")
	_, port, _ := net.SplitHostPort(sk.addr)
	resolver := dnsServer(t, map[string]string{"example.com": "127.0.0.1"})
	// Retries 1 s then 2 s apart: time to swap the sinks in between.
	s := deliveryServer(t, resolver, port, "-retry-first", "1s", "-retry-max", "2s")
	c := mxData(t, s.mx, "<x@example.net>", "<din@example.org>")
	c.send("Subject: retry\r\n\r\nhello\r\n.\r\n")
	id := queued(c.expect("250"))[0]
	q := openQueue(t, s)
	waitFor(t, "two attempts", func() bool {
		m, err := q.Get(id)
		return err == nil && m.Recipients[0].Attempts >= 2
	})
	sk.stop()
	m, _ := q.Get(id)
	if m.Recipients[0].Attempts != 2 || !strings.Contains(m.Recipients[0].LastError, "said at RCPT: 4") {
		t.Fatalf("after two attempts: %+v", m.Recipients[0])
	}
	sk2 := startSink(t, sk.addr)
	waitFor(t, "the third attempt", func() bool { return len(sk2.messages()) == 1 })
	waitFor(t, "an empty queue", func() bool { m, _ := q.List(); return len(m) == 0 })
	if !strings.Contains(s.logText(), "attempt=3") {
		t.Errorf("not delivered at the third attempt:\n%s", s.logText())
	}
}

// TestDeliverBounce: a 550 at the destination produces a DSN to the
// sender, which Python's email package reads as a delivery report. The
// destination's MX is 127.0.0.2 (a sink refusing every RCPT), the
// sender's 127.0.0.1 (a sink taking everything), on the same port.
func TestDeliverBounce(t *testing.T) {
	needTools(t, "python3")
	good := startSink(t, "")
	_, port, _ := net.SplitHostPort(good.addr)
	startSink(t, "127.0.0.2:"+port, "-f", "RCPT")
	resolver := dnsServer(t, map[string]string{"example.com": "127.0.0.2", "example.net": "127.0.0.1"})
	s := deliveryServer(t, resolver, port)
	c := mxData(t, s.mx, "<sender@example.net> RET=HDRS ENVID=env42", "<din@example.org> NOTIFY=FAILURE ORCPT=rfc822;din@example.org")
	c.send("From: sender@example.net\r\nSubject: will bounce\r\nMessage-ID: <orig@example.net>\r\n\r\nsecret body\r\n.\r\n")
	c.expect("250")
	waitFor(t, "the bounce", func() bool { return len(good.messages()) == 1 })
	dump := good.messages()[0]
	if !strings.Contains(dump, "X-Mail-Args: <>") || !strings.Contains(dump, "X-Rcpt-Args: <sender@example.net>") {
		t.Fatalf("bounce envelope:\n%s", dump)
	}
	// The message starts after smtp-sink's X- lines.
	msg := dump[strings.Index(dump, "\nReceived: ")+1:]
	py := `
import email, sys
m = email.message_from_string(sys.stdin.read())
assert m.get_content_type() == "multipart/report", m.get_content_type()
assert m.get_param("report-type") == "delivery-status"
parts = m.get_payload()
assert parts[1].get_content_type() == "message/delivery-status"
blocks = parts[1].get_payload()
per_msg, per_rcpt = blocks[0], blocks[1]
assert per_msg["Original-Envelope-Id"] == "env42", per_msg.items()
assert per_rcpt["Action"] == "failed"
assert per_rcpt["Status"].startswith("5."), per_rcpt["Status"]
assert per_rcpt["Final-Recipient"] == "rfc822;romain@example.com"
assert per_rcpt["Original-Recipient"] == "rfc822;din@example.org"
assert per_rcpt["Remote-MTA"] == "dns; mx.example.com"
assert per_rcpt["Diagnostic-Code"].startswith("smtp; 5")
assert parts[2].get_content_type() == "text/rfc822-headers"
assert "orig@example.net" in parts[2].get_payload()
assert "secret body" not in m.as_string()
print("ok", per_rcpt["Status"], per_rcpt["Diagnostic-Code"])
`
	code, out := runTool(t, msg, "python3", "-c", py)
	if code != 0 {
		t.Fatalf("python's email package on the DSN: %s\n%s", out, msg)
	}
	t.Log(strings.TrimSpace(out))
	q := openQueue(t, s)
	waitFor(t, "an empty queue", func() bool { m, _ := q.List(); return len(m) == 0 })
}

var msgIDRe = regexp.MustCompile(`(?m)^Message-ID: <([^>]+)>`)

// TestDeliverSIGKILL kills the server three times while clients send and
// it delivers. After the last restart every acknowledged message reaches
// the sink, and a message arrives twice only if its transaction was in
// flight at a kill (at most -max-deliveries per kill).
func TestDeliverSIGKILL(t *testing.T) {
	sk := startSink(t, "")
	_, port, _ := net.SplitHostPort(sk.addr)
	resolver := dnsServer(t, map[string]string{"example.com": "127.0.0.1", "example.net": "127.0.0.1"})
	const parallel = 5
	s := deliveryServer(t, resolver, port, "-max-deliveries", fmt.Sprint(parallel))
	ackedIDs := map[string]bool{}
	const rounds = 3
	for round := range rounds {
		for _, a := range killRound(s, fmt.Sprintf("k%d", round), 4, time.Duration(200+rand.IntN(300))*time.Millisecond) {
			ackedIDs[msgIDRe.FindStringSubmatch(a.body)[1]] = true
		}
	}
	q := openQueue(t, s)
	for i := 0; ; i++ {
		m, err := q.List()
		if len(m) == 0 && err == nil {
			break
		}
		if i == 300 {
			for _, x := range m {
				t.Logf("left: %+v", *x)
			}
			t.Fatalf("the queue did not empty (%v):\n%s", err, s.logText())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// team@example.org has two members: every message is two deliveries.
	got := map[string]int{}
	for _, m := range sk.messages() {
		if id := msgIDRe.FindStringSubmatch(m); id != nil {
			got[id[1]]++
		}
	}
	dups := 0
	for id := range ackedIDs {
		switch n := got[id]; {
		case n < 2:
			t.Errorf("message %s: %d of 2 deliveries", id, n)
		case n > 2:
			dups += n - 2
		}
	}
	t.Logf("%d messages acknowledged, %d deliveries at the sink, %d repeated", len(ackedIDs), len(sk.messages()), dups)
	if dups > rounds*parallel {
		t.Errorf("%d repeated deliveries, more than %d transactions could have been in flight", dups, rounds*parallel)
	}
}

// writeConfig writes a JSON config file for -config.
func writeConfig(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestDeliverSubmissionRelay: elit A relays din's mail through elit B's
// submission ports with SASL (the strongest mechanism B offers, then a
// configured one over implicit TLS); B delivers to the sink.
func TestDeliverSubmissionRelay(t *testing.T) {
	needTools(t, "swaks")
	sk := startSink(t, "")
	b := startServer(t, "-deliver=true", "-smarthost", sk.addr)
	for _, tr := range []map[string]any{
		{"type": "submission", "host": b.sub, "user": "din", "password": dinPassword, "ca-file": b.cert},
		{"type": "submission", "host": b.subs, "tls": "implicit", "user": "din", "password": dinPassword, "ca-file": b.cert, "mechanism": "CRAM-MD5"},
	} {
		before := len(sk.messages())
		cfg := writeConfig(t, map[string]any{
			"transports": map[string]any{"relay": tr},
			"routes":     []map[string]any{{"user": "din", "transport": "relay"}},
		})
		a := startServer(t, "-deliver=true", "-config", cfg, "-resolver", "127.0.0.1:1")
		code, out := a.swaks(a.subs, "--tls-on-connect", "--auth", "PLAIN", "--auth-user", "din", "--auth-password", dinPassword,
			"--from", "din@example.org", "--to", "friend@example.com", "--header", "From: din@example.org")
		if code != 0 {
			t.Fatalf("swaks: %d\n%s", code, out)
		}
		waitFor(t, "the relayed message", func() bool { return len(sk.messages()) == before+1 })
		got := sk.messages()[before]
		if !strings.Contains(got, "X-Mail-Args: <din@example.org>") || !strings.Contains(got, "X-Rcpt-Args: <friend@example.com>") ||
			strings.Count(got, "(Elit) with ESMTPSA") != 2 {
			t.Errorf("at the sink:\n%s", got)
		}
		want := "mechanism=SCRAM-SHA-256"
		if tr["mechanism"] != nil {
			want = "mechanism=CRAM-MD5"
		}
		waitLog(t, b, want)
		waitLog(t, a, "transport=relay")
	}
}

// TestDeliverSOCKS5: a route sends mail for one domain directly, but
// through a SOCKS5 proxy on loopback.
func TestDeliverSOCKS5(t *testing.T) {
	sk := startSink(t, "")
	_, port, _ := net.SplitHostPort(sk.addr)
	resolver := dnsServer(t, map[string]string{"example.com": "127.0.0.1", "example.net": "127.0.0.1"})
	proxyAddr, seen := socks5Server(t)
	cfg := writeConfig(t, map[string]any{
		"transports": map[string]any{"socks": map[string]any{"type": "direct", "socks5": proxyAddr}},
		"routes":     []map[string]any{{"to-domains": []string{"example.com"}, "transport": "socks"}},
	})
	s := deliveryServer(t, resolver, port, "-config", cfg)
	c := mxData(t, s.mx, "<x@example.net>", "<din@example.org>")
	c.send("Subject: via socks\r\n\r\nhello\r\n.\r\n")
	c.expect("250")
	waitFor(t, "the message", func() bool { return len(sk.messages()) == 1 })
	if got := <-seen; got != "127.0.0.1:"+port {
		t.Errorf("the proxy was asked for %q", got)
	}
	waitLog(t, s, "transport=socks")
}

// socks5Server is a minimal SOCKS5 proxy (RFC 1928: no authentication,
// CONNECT to IPv4 addresses only), reporting each destination.
func socks5Server(t *testing.T) (string, <-chan string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	seen := make(chan string, 10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 262)
				if _, err := io.ReadFull(c, buf[:2]); err != nil || buf[0] != 5 {
					return
				}
				io.ReadFull(c, buf[:buf[1]])
				c.Write([]byte{5, 0})
				if _, err := io.ReadFull(c, buf[:4]); err != nil || buf[1] != 1 || buf[3] != 1 {
					c.Write([]byte{5, 8, 0, 1, 0, 0, 0, 0, 0, 0})
					return
				}
				io.ReadFull(c, buf[:6])
				dst := fmt.Sprintf("%d.%d.%d.%d:%d", buf[0], buf[1], buf[2], buf[3], int(buf[4])<<8|int(buf[5]))
				up, err := net.Dial("tcp", dst)
				if err != nil || !strings.HasPrefix(dst, "127.") {
					c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0})
					return
				}
				defer up.Close()
				seen <- dst
				c.Write([]byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0})
				go io.Copy(up, c)
				io.Copy(c, up)
			}()
		}
	}()
	return l.Addr().String(), seen
}

// TestQueueOps: hold, release, retry and drop through the running server's
// control socket, and drop on the files when no server runs.
func TestQueueOps(t *testing.T) {
	sk := startSink(t, "", "-r", "RCPT")
	_, port, _ := net.SplitHostPort(sk.addr)
	resolver := dnsServer(t, map[string]string{"example.com": "127.0.0.1", "example.net": "127.0.0.1"})
	s := deliveryServer(t, resolver, port, "-retry-first", "1h", "-retry-max", "2h")
	send := func() string {
		c := mxData(t, s.mx, "<sender@example.net>", "<din@example.org>")
		c.send("Subject: ops\r\n\r\nhello\r\n.\r\n")
		return queued(c.expect("250"))[0]
	}
	id := send()
	q := openQueue(t, s)
	status := func(id string) string {
		m, err := q.Get(id)
		if err != nil {
			return err.Error()
		}
		return fmt.Sprintf("%s/%d", m.Recipients[0].Status, m.Recipients[0].Attempts)
	}
	waitFor(t, "the first attempt", func() bool { return status(id) == "pending/1" })
	elit := func(args ...string) string {
		t.Helper()
		code, out := runTool(t, "", elitBinary(t), append([]string{"queue", "-state", s.state}, args...)...)
		if code != 0 {
			t.Fatalf("elit queue %v: exit %d: %s", args, code, out)
		}
		return out
	}
	if out := elit("hold", id); !strings.Contains(out, "1 recipients") || status(id) != "held/1" {
		t.Errorf("hold: %s, %s", out, status(id))
	}
	elit("release", id)
	waitFor(t, "a second attempt after release", func() bool { return status(id) == "pending/2" })
	elit("retry", id)
	waitFor(t, "a third attempt after retry", func() bool { return status(id) == "pending/3" })
	elit("drop", id)
	if _, err := q.Get(id); err == nil {
		t.Errorf("dropped, still queued")
	}
	waitLog(t, s, "bounce queued")
	if code, out := runTool(t, "", elitBinary(t), "queue", "-state", s.state, "hold", "20260101T000000-000000000000"); code == 0 {
		t.Errorf("hold of a missing message: %s", out)
	}
	// Offline: no server, the command edits the files.
	id2 := send()
	s.stop()
	if out := elit("-no-bounce", "drop", id2); !strings.Contains(out, "drop-quietly") {
		t.Errorf("offline drop: %s", out)
	}
	msgs, _ := q.List()
	bounces := 0
	for _, m := range msgs {
		if m.ID == id2 {
			t.Errorf("offline drop left the message")
		}
		if m.From == "" && m.Recipients[0].Address == "sender@example.net" {
			bounces++
		}
	}
	if bounces != 1 { // the online drop's (the sink defers it); none from -no-bounce
		t.Errorf("%d bounces queued, want 1", bounces)
	}
}

// TestDeliverList: list mail goes out with each member's bounce address;
// a member whose MX refuses is counted as a bounce of the list (no DSN to
// the sender), and a bounce sent to a member's address is counted too.
func TestDeliverList(t *testing.T) {
	good := startSink(t, "")
	_, port, _ := net.SplitHostPort(good.addr)
	startSink(t, "127.0.0.2:"+port, "-f", "RCPT")
	resolver := dnsServer(t, map[string]string{"example.com": "127.0.0.2", "example.net": "127.0.0.1"})
	s := deliveryServer(t, resolver, port)
	needTools(t, "swaks")
	if code, out := s.swaks(s.mx, "--from", "sender@example.net", "--to", "team@example.org"); code != 0 {
		t.Fatalf("swaks: %d\n%s", code, out)
	}
	for i := 0; len(good.messages()) != 1; i++ {
		if i == 200 {
			t.Fatalf("no delivery to hannes:\n%s", s.logText())
		}
		time.Sleep(50 * time.Millisecond)
	}
	got := good.messages()[0]
	bounceAddr := bounceRe.FindString(got)
	if bounceAddr == "" || !strings.Contains(got, "X-Rcpt-Args: <hannes@example.net>") {
		t.Fatalf("at hannes's MX:\n%s", got)
	}
	q := openQueue(t, s)
	waitFor(t, "an empty queue", func() bool { m, _ := q.List(); return len(m) == 0 })
	// A bounce arrives for hannes; the unsigned form of the address, or
	// one signed for someone else, is refused.
	c := dialRaw(t, s.mx)
	c.send("EHLO mx.example.net\r\nMAIL FROM:<>\r\nRCPT TO:<team+bounces=hannes=example.net@example.org>\r\n" +
		"RCPT TO:<" + strings.Replace(bounceAddr, "=hannes=", "=mallory=", 1) + ">\r\nRCPT TO:<" + bounceAddr + ">\r\nDATA\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("550 5.1.1")
	c.expect("550 5.1.1")
	c.expect("250")
	c.expect("354")
	c.send("Subject: Undelivered\r\n\r\nmailbox full\r\n.\r\n")
	c.expect("250 2.0.0 Bounce recorded")
	code, out := runTool(t, "", elitBinary(t), "lists", "-state", s.state)
	if code != 0 || !strings.Contains(out, "team@example.org  romain@example.com  1 bounces") ||
		!strings.Contains(out, "team@example.org  hannes@example.net  1 bounces") {
		t.Errorf("elit lists: %d\n%s", code, out)
	}
	if len(good.messages()) != 1 {
		t.Errorf("something was sent to the sender: %d messages at example.net", len(good.messages()))
	}
}

// bounceRe is the signed bounce address of hannes in the list team.
var bounceRe = regexp.MustCompile(`team\+bounces=[A-Z2-7]{13}=hannes=example\.net@example\.org`)

// TestDeliver8BitMIME: a peer without 8BITMIME gets 7-bit messages, and an
// 8-bit message fails (RFC 6152 §3: convert or return) instead of going
// out broken.
func TestDeliver8BitMIME(t *testing.T) {
	sk := startSink(t, "", "-8")
	_, port, _ := net.SplitHostPort(sk.addr)
	resolver := dnsServer(t, map[string]string{"example.com": "127.0.0.1"})
	s := deliveryServer(t, resolver, port)
	send := func(body string) {
		c := mxData(t, s.mx, "<> BODY=8BITMIME", "<din@example.org>")
		c.send("Subject: 8bit\r\n\r\n" + body + "\r\n.\r\n")
		c.expect("250")
	}
	send("plain ascii")
	send("caf\xc3\xa9")
	waitFor(t, "the ASCII message", func() bool { return len(sk.messages()) == 1 })
	waitLog(t, s, "5.6.3")
	if strings.Contains(sk.messages()[0], "caf") {
		t.Errorf("the 8-bit message went out")
	}
}

// TestDeliverDotStuffing: lines starting with a dot arrive intact, with
// and without PIPELINING at the peer (smtp-sink -p; its dump has LF line
// ends); CHUNKING (BDAT) is
// covered by the relay test, whose peer is Elit.
func TestDeliverDotStuffing(t *testing.T) {
	for _, args := range [][]string{nil, {"-p"}} {
		sk := startSink(t, "", args...)
		_, port, _ := net.SplitHostPort(sk.addr)
		resolver := dnsServer(t, map[string]string{"example.com": "127.0.0.1"})
		s := deliveryServer(t, resolver, port)
		c := mxData(t, s.mx, "<>", "<din@example.org>")
		c.send("Subject: dots\r\n\r\n..one dot\r\n...two dots\r\nend\r\n.\r\n")
		c.expect("250")
		waitFor(t, "the message", func() bool { return len(sk.messages()) == 1 })
		if got := sk.messages()[0]; !strings.Contains(got, "\n.one dot\n..two dots\nend\n") {
			t.Errorf("sink %v got:\n%q", args, got)
		}
	}
}

// TestDeliverRelayedNotice: NOTIFY=SUCCESS to a peer without DSN gets a
// "relayed" DSN (RFC 3461 §6.2.2); to a peer with DSN, NOTIFY is passed on.
func TestDeliverRelayedNotice(t *testing.T) {
	noDSN := startSink(t, "")
	_, port, _ := net.SplitHostPort(noDSN.addr)
	resolver := dnsServer(t, map[string]string{"example.com": "127.0.0.1", "example.net": "127.0.0.1"})
	s := deliveryServer(t, resolver, port)
	c := mxData(t, s.mx, "<sender@example.net>", "<din@example.org> NOTIFY=SUCCESS,FAILURE")
	c.send("Subject: tell me\r\n\r\nhello\r\n.\r\n")
	c.expect("250")
	// smtp-sink announces DSN: NOTIFY goes on, no notice from us.
	waitFor(t, "the message", func() bool { return len(noDSN.messages()) == 1 })
	if !strings.Contains(noDSN.messages()[0], "X-Rcpt-Args: <romain@example.com> NOTIFY=SUCCESS,FAILURE") {
		t.Errorf("NOTIFY not passed on:\n%s", noDSN.messages()[0])
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(noDSN.messages()); n != 1 {
		t.Errorf("%d messages, want no notice", n)
	}

	// A peer without ESMTP (smtp-sink -e: EHLO refused, HELO taken): the
	// message goes, and the sender gets a "relayed" notice.
	noDSN.stop()
	plain := startSink(t, noDSN.addr, "-e")
	c = mxData(t, s.mx, "<sender@example.net>", "<din@example.org> NOTIFY=SUCCESS")
	c.send("Subject: tell me again\r\n\r\nhello\r\n.\r\n")
	c.expect("250")
	waitFor(t, "the message and the notice", func() bool { return len(plain.messages()) == 2 })
	notice := plain.messages()[1]
	if !strings.Contains(notice, "X-Rcpt-Args: <sender@example.net>") || !strings.Contains(notice, "Action: relayed") || !strings.Contains(notice, "Status: 2.0.0") {
		t.Errorf("notice:\n%s", notice)
	}
}
