package deliver

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"

	"elit.local/elit/internal/testlib"
	"elit.local/elit/queue"
)

// reports keeps the TLS outcomes reported.
type reports struct {
	mu  sync.Mutex
	all []TLSOutcome
}

func (r *reports) ReportTLS(o TLSOutcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all = append(r.all, o)
}

func (r *reports) list() []TLSOutcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]TLSOutcome(nil), r.all...)
}

// policyFunc is a TLSPolicy made of a function.
type policyFunc func(TLSDestination) (TLSPlan, error)

func (f policyFunc) TLSPlan(_ context.Context, d TLSDestination) (TLSPlan, error) { return f(d) }

// plan is a policy with one plan for every host.
func plan(reqs ...TLSRequirement) TLSPolicy {
	return policyFunc(func(TLSDestination) (TLSPlan, error) { return TLSPlan{Policy: "test", Requirements: reqs}, nil })
}

// TestTLSPolicy delivers to a peer with STARTTLS and a self-signed
// certificate for mx.example.com under policies: the default falls back
// to unverified TLS; a requirement against other names, or with a check
// of its own, is met or not as it says; a host without STARTTLS fails a
// requirement of TLS; a policy error skips the host. Each connection's
// TLS outcome is reported, and each policy error with its result type.
func TestTLSPolicy(t *testing.T) {
	cert, pool := testlib.Certificate("mx.example.com")
	pin := func(cs tls.ConnectionState) error { // as DANE-EE would: this certificate, whoever signed it
		if len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, cert.Certificate[0]) {
			return errors.New("not the pinned certificate")
		}
		return nil
	}
	verified := TLSRequirement{Mode: TLSVerified, Required: true}
	for _, c := range []struct {
		name     string
		policy   TLSPolicy
		roots    *x509.CertPool
		noTLS    bool      // the peer offers no STARTTLS
		tls      []TLSMode // achieved, per connection reported
		failures []string  // the failure of each
		result   string    // the recipient's LastError starts so; "" delivered
	}{
		{name: "default, untrusted", tls: []TLSMode{TLSNone, TLSUnverified}, failures: []string{"certificate-not-trusted", ""}},
		{name: "default, trusted", roots: pool, tls: []TLSMode{TLSVerified}, failures: []string{""}},
		{name: "default, no STARTTLS", noTLS: true, tls: []TLSMode{TLSNone}, failures: []string{""}},
		{name: "required, trusted", policy: plan(verified), roots: pool, tls: []TLSMode{TLSVerified}, failures: []string{""}},
		{name: "required, untrusted", policy: plan(verified), tls: []TLSMode{TLSNone}, failures: []string{"certificate-not-trusted"}, result: "4.7.5 mx.example.com: TLS (verified)"},
		{name: "required, no STARTTLS", policy: plan(verified), noTLS: true, tls: []TLSMode{TLSNone}, failures: []string{"starttls-not-supported"}, result: "4.7.10 mx.example.com offers no STARTTLS"},
		{name: "other names", policy: plan(TLSRequirement{Mode: TLSVerified, Required: true, ServerNames: []string{"mx.example.net", "other.example"}}), roots: pool,
			tls: []TLSMode{TLSNone}, failures: []string{"certificate-host-mismatch"}, result: "4.7.5"},
		{name: "names", policy: plan(TLSRequirement{Mode: TLSVerified, Required: true, ServerNames: []string{"other.example", "mx.example.com"}}), roots: pool,
			tls: []TLSMode{TLSVerified}, failures: []string{""}},
		{name: "pinned", policy: plan(TLSRequirement{Mode: TLSVerified, Required: true, Verify: pin}), tls: []TLSMode{TLSVerified}, failures: []string{""}},
		{name: "testing", policy: plan(verified, TLSRequirement{Mode: TLSNone}), tls: []TLSMode{TLSNone, TLSNone}, failures: []string{"certificate-not-trusted", ""}},
		{name: "policy error", policy: policyFunc(func(TLSDestination) (TLSPlan, error) { return TLSPlan{}, errors.New("MX host not in the policy") }),
			tls: []TLSMode{TLSNone}, failures: []string{"validation-failure"}, result: "4.7.5 mx.example.com: TLS policy: MX host not in the policy"},
		{name: "policy error with a result type", policy: policyFunc(func(TLSDestination) (TLSPlan, error) {
			return TLSPlan{Policy: "sts"}, &TLSPolicyError{ResultType: "sts-policy-fetch-error", Err: errors.New("fetching the policy: timeout")}
		}), tls: []TLSMode{TLSNone}, failures: []string{"sts-policy-fetch-error"}, result: "4.7.5 mx.example.com: TLS policy: fetching the policy"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPeer(t, func(s *smtp.Server) {
				if !c.noTLS {
					s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
				}
			})
			rep := &reports{}
			d := newDeliverer(t, Config{Resolver: loopbackMX("example.com"), Port: p.Port, RootCAs: c.roots, TLSPolicy: c.policy, TLSReporter: rep})
			m := &queue.Message{From: "sender@example.net", Recipients: []queue.Recipient{{Address: "a@example.com"}}}
			queueMessage(t, d, m)
			d.process(context.Background(), m.ID)
			got, err := d.cfg.Queue.Get(m.ID)
			switch {
			case c.result == "" && !errors.Is(err, queue.ErrNotFound):
				t.Errorf("not delivered: %+v", got.Recipients[0])
			case c.result != "" && (err != nil || got.Recipients[0].Status != queue.Pending || !strings.HasPrefix(got.Recipients[0].LastError, c.result)):
				t.Errorf("got %+v (%v), want it pending with %q", got, err, c.result)
			case c.result != "" && len(p.Received()) != 0:
				t.Error("the peer got the message")
			}
			outcomes := rep.list()
			if len(outcomes) != len(c.tls) {
				t.Fatalf("%d outcomes reported, want %d: %+v", len(outcomes), len(c.tls), outcomes)
			}
			for i, o := range outcomes {
				if o.Achieved != c.tls[i] || o.Failure != c.failures[i] || (o.Err == nil) != (o.Failure == "") {
					t.Errorf("outcome %d: %s, %q (%v); want %s, %q", i, o.Achieved, o.Failure, o.Err, c.tls[i], c.failures[i])
				}
				if o.Domain != "example.com" || o.Host != "mx.example.com" || o.Addr != "127.0.0.1:"+p.Port || o.Transport != "direct" {
					t.Errorf("outcome %d is for %+v", i, o.TLSDestination)
				}
				if (o.Achieved != TLSNone) != (o.Version != 0) {
					t.Errorf("outcome %d: %s with TLS version %x", i, o.Achieved, o.Version)
				}
			}
		})
	}
}

// TestTLSPolicyAsked: the policy is asked for each host with the
// destination's domain, the host, and the transport; through a relay the
// domain is "".
func TestTLSPolicyAsked(t *testing.T) {
	p := newPeer(t, nil)
	var mu sync.Mutex
	var asked []TLSDestination
	policy := policyFunc(func(d TLSDestination) (TLSPlan, error) {
		mu.Lock()
		asked = append(asked, d)
		mu.Unlock()
		return Opportunistic{}.TLSPlan(context.Background(), d)
	})
	d := newDeliverer(t, Config{Resolver: loopbackMX("example.com"), Port: p.Port, TLSPolicy: policy,
		Transports: map[string]*Transport{"relay": {Type: "smarthost", Host: "127.0.0.1:" + p.Port}},
		Routes:     []Route{{ToDomains: []string{"example.net"}, Transport: "relay"}}})
	m := &queue.Message{From: "sender@example.org", Recipients: []queue.Recipient{{Address: "a@example.com"}, {Address: "b@example.net"}}}
	queueMessage(t, d, m)
	d.process(context.Background(), m.ID)
	want := []TLSDestination{
		{Transport: "direct", Domain: "example.com", Host: "mx.example.com"},
		{Transport: "smarthost", Host: "127.0.0.1"},
	}
	mu.Lock()
	defer mu.Unlock()
	if len(asked) != 2 || asked[0] != want[0] && asked[0] != want[1] || asked[1] != want[0] && asked[1] != want[1] || asked[0] == asked[1] {
		t.Errorf("asked %+v, want %+v", asked, want)
	}
}

// TestOpportunistic: the default plans are today's behaviour.
func TestOpportunistic(t *testing.T) {
	for _, c := range []struct {
		dest TLSDestination
		want []TLSRequirement
	}{
		{TLSDestination{Transport: "direct", Domain: "example.com", Host: "mx.example.com"},
			[]TLSRequirement{{Mode: TLSVerified}, {Mode: TLSUnverified}, {Mode: TLSNone}}},
		{TLSDestination{Transport: "smarthost", Host: "relay.example"},
			[]TLSRequirement{{Mode: TLSVerified}, {Mode: TLSUnverified}, {Mode: TLSNone}}},
		{TLSDestination{Transport: "submission", Host: "smtp.example", ImplicitTLS: true},
			[]TLSRequirement{{Mode: TLSVerified, Required: true}}},
	} {
		got, err := Opportunistic{}.TLSPlan(context.Background(), c.dest)
		if err != nil || len(got.Requirements) != len(c.want) {
			t.Errorf("%+v: %+v %v", c.dest, got, err)
			continue
		}
		for i, r := range got.Requirements {
			if r.Mode != c.want[i].Mode || r.Required != c.want[i].Required || r.ServerNames != nil || r.Verify != nil {
				t.Errorf("%+v: requirement %d is %+v, want %+v", c.dest, i, r, c.want[i])
			}
		}
	}
}
