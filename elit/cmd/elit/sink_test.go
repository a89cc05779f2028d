package main

import (
	"net"
	"os"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"

	"elit.local/elit/internal/smtptest"
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

// sink is Postfix's smtp-sink as a destination MX (smtptest.Sink).
type sink struct{ *smtptest.Sink }

func startSink(t *testing.T, addr string, args ...string) *sink {
	return &sink{smtptest.StartSink(t, addr, args...)}
}

// messages are the messages the sink accepted.
func (s *sink) messages() []string {
	b, _ := os.ReadFile(s.Dump)
	var out []string
	for _, m := range strings.Split(string(b), "X-Client-Addr: ") {
		if strings.TrimSpace(m) != "" {
			out = append(out, "X-Client-Addr: "+m)
		}
	}
	return out
}

// deliveryServer starts elit delivering to the sink through the test DNS.
func deliveryServer(t *testing.T, resolver, port string, args ...string) *proc {
	return startServer(t, append([]string{"-deliver=true", "-resolver", resolver, "-delivery-port", port,
		"-retry-first", "300ms", "-retry-max", "1s"}, args...)...)
}
