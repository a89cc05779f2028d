// Package dnstest serves a zone from records in their text form (RFC
// 1035 §5) on loopback, for tests that check our DNS client or let
// another program (pyspf, authheaders through dnspython) resolve the
// same data as our code.
package dnstest

import (
	"fmt"
	"net"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"
)

// Zone is what the server answers.
type Zone struct {
	// Records in zone-file form, owner names absolute:
	// "example.com. 300 IN TXT \"v=spf1 -all\"".
	Records []string
	// ServFail are names (with the final dot optional) answered with
	// SERVFAIL, a temporary failure.
	ServFail []string
}

// Serve answers queries for zone on 127.0.0.1 over UDP and TCP until the
// test ends, and returns the address (host:port). A name with no record
// of any type is NXDOMAIN; one with records of other types gets an empty
// answer. CNAMEs in the zone are followed, as a recursive resolver does.
func Serve(t testing.TB, zone Zone) string {
	t.Helper()
	handler, err := Handler(zone)
	if err != nil {
		t.Fatalf("dnstest: %v", err)
	}
	addr, stop, err := Listen("127.0.0.1:0", handler)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return addr
}

// Handler answers for zone as Serve does.
func Handler(zone Zone) (mdns.Handler, error) {
	byName := map[string][]mdns.RR{}
	for _, s := range zone.Records {
		rr, err := mdns.NewRR(s)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", s, err)
		}
		if rr == nil {
			continue // a blank line or a comment
		}
		name := strings.ToLower(rr.Header().Name)
		byName[name] = append(byName[name], rr)
	}
	fail := map[string]bool{}
	for _, n := range zone.ServFail {
		fail[strings.ToLower(mdns.Fqdn(n))] = true
	}
	return mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		m.RecursionAvailable = true
		if len(r.Question) != 1 {
			m.Rcode = mdns.RcodeFormatError
			w.WriteMsg(m)
			return
		}
		q := r.Question[0]
		name := strings.ToLower(q.Name)
		for range 8 {
			if fail[name] {
				m.Answer = nil
				m.Rcode = mdns.RcodeServerFailure
				break
			}
			rrs, ok := byName[name]
			if !ok {
				m.Rcode = mdns.RcodeNameError
				break
			}
			var cname string
			for _, rr := range rrs {
				switch {
				case rr.Header().Rrtype == q.Qtype:
					m.Answer = append(m.Answer, rr)
				case rr.Header().Rrtype == mdns.TypeCNAME && q.Qtype != mdns.TypeCNAME:
					m.Answer = append(m.Answer, rr)
					cname = strings.ToLower(rr.(*mdns.CNAME).Target)
				}
			}
			if cname == "" {
				break
			}
			name = cname
		}
		w.WriteMsg(m)
	}), nil
}

// Listen serves handler on addr (host:port, port 0 for any) over UDP and
// TCP, and returns the address and the function that stops it.
func Listen(addr string, handler mdns.Handler) (string, func(), error) {
	// TCP on the UDP port the kernel chose: an outgoing connection of
	// another test may hold that TCP port, so a port of our own (":0")
	// is tried again with another, at most 20 times.
	var pc net.PacketConn
	var l net.Listener
	for try := 0; ; try++ {
		var err error
		if pc, err = net.ListenPacket("udp", addr); err != nil {
			return "", nil, err
		}
		if l, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		if _, port, _ := net.SplitHostPort(addr); port != "0" || try == 20 {
			return "", nil, err
		}
	}
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	udp := &mdns.Server{PacketConn: pc, Handler: handler, NotifyStartedFunc: notify}
	tcp := &mdns.Server{Listener: l, Handler: handler, NotifyStartedFunc: notify}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	<-started
	<-started
	return pc.LocalAddr().String(), func() {
		udp.Shutdown()
		tcp.Shutdown()
	}, nil
}
