package deliver

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"elit.local/elit/internal/testlib"
	"elit.local/elit/queue"
)

// enforcing is a fake TLS policy in force for every host, as MTA-STS in
// mode enforce plans: verified TLS, required; it says MTA-STS verifies
// the host (until the real policies exist).
var enforcing = policyFunc(func(TLSDestination) (TLSPlan, error) {
	return TLSPlan{Policy: "sts", VerifiedBy: VerifiedBySTS, PolicyDomain: "example.com",
		PolicyStrings: []string{"version: STSv1", "mode: enforce", "mx: mx.example.com", "max_age: 86400"}, MXHosts: []string{"mx.example.com"},
		Requirements: []TLSRequirement{{Mode: TLSVerified, Required: true}}}, nil
})

// TestRequireTLS delivers messages with REQUIRETLS and with
// "TLS-Required: No" (RFC 8689) to a loopback peer, under a fake policy
// that verifies (as MTA-STS would), the default policy, or a failing
// one: REQUIRETLS mail goes only verified, to a peer that offers
// REQUIRETLS, with the parameter; otherwise it fails with 5.7.30 and the
// sender gets a DSN that is itself REQUIRETLS with the header only.
// TLS-Required: No delivers despite a bad certificate or a policy error,
// unless the message also has REQUIRETLS, which wins.
func TestRequireTLS(t *testing.T) {
	cert, pool := testlib.Certificate("mx.example.com")
	_, otherPool := testlib.Certificate("mx.example.com") // a CA that did not sign the peer's
	failing := policyFunc(func(TLSDestination) (TLSPlan, error) {
		return TLSPlan{Policy: "sts"}, &TLSPolicyError{ResultType: "sts-policy-fetch-error", Err: errors.New("fetching the policy: timeout")}
	})
	for _, c := range []struct {
		name          string
		from          string // "" the null sender
		requireTLS    bool
		tlsNo         bool
		policy        TLSPolicy
		peerNoREQTLS  bool // the peer does not offer REQUIRETLS
		untrusted     bool // the peer's certificate does not verify
		want          string
		wantPeerParam bool // the peer saw MAIL ... REQUIRETLS
		wantDSN       bool
	}{
		{name: "REQUIRETLS, verified, peer offers it", requireTLS: true, policy: enforcing, want: "delivered", wantPeerParam: true},
		{name: "REQUIRETLS, peer without it", requireTLS: true, policy: enforcing, peerNoREQTLS: true, want: "5.7.30 mx.example.com does not offer REQUIRETLS", wantDSN: true},
		{name: "REQUIRETLS, no policy verifies", requireTLS: true, want: "5.7.30 REQUIRETLS: no MTA-STS policy", wantDSN: true},
		{name: "REQUIRETLS, bad certificate", requireTLS: true, policy: enforcing, untrusted: true, want: "pending 4.7.5"},
		{name: "REQUIRETLS and TLS-Required: No, bad certificate", requireTLS: true, tlsNo: true, policy: enforcing, untrusted: true, want: "pending 4.7.5"},
		{name: "TLS-Required: No, bad certificate", tlsNo: true, policy: enforcing, untrusted: true, want: "delivered"},
		{name: "TLS-Required: No, policy error", tlsNo: true, policy: failing, untrusted: true, want: "delivered"},
		{name: "no header, bad certificate", policy: enforcing, untrusted: true, want: "pending 4.7.5"},
		{name: "REQUIRETLS bounce, peer without it", from: "-", requireTLS: true, policy: enforcing, peerNoREQTLS: true, want: "delivered"},
		{name: "REQUIRETLS bounce, peer with it", from: "-", requireTLS: true, policy: enforcing, want: "delivered", wantPeerParam: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPeer(t, func(s *smtp.Server) {
				s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
				s.EnableREQUIRETLS = !c.peerNoREQTLS
			})
			roots := pool
			if c.untrusted {
				roots = otherPool
			}
			rep := &reports{}
			d := newDeliverer(t, Config{Resolver: loopbackMX("example.com"), Port: p.Port, RootCAs: roots, TLSPolicy: c.policy, TLSReporter: rep})
			from := "sender@example.net"
			if c.from == "-" {
				from = ""
			}
			m := &queue.Message{From: from, Ret: "FULL", RequireTLS: c.requireTLS, TLSRequiredNo: c.tlsNo,
				Recipients: []queue.Recipient{{Address: "a@example.com"}}}
			queueMessage(t, d, m)
			d.process(context.Background(), m.ID)
			got, err := d.cfg.Queue.Get(m.ID)
			var status string
			switch {
			case errors.Is(err, queue.ErrNotFound) && len(p.Received()) == 1:
				status = "delivered"
			case errors.Is(err, queue.ErrNotFound): // failed and reported
				dsn, _ := dsnOf(t, d)
				_, status, _ = strings.Cut(dsn, "<a@example.com>: ")
			case err != nil:
				t.Fatal(err)
			case got.Recipients[0].Status == queue.Pending:
				status = "pending " + got.Recipients[0].LastError
			default:
				status = got.Recipients[0].LastError
			}
			if !strings.HasPrefix(status, c.want) {
				t.Errorf("got %q, want %q", status, c.want)
			}
			if rcvd := p.Received(); status == "delivered" && rcvd[0].RequireTLS != c.wantPeerParam {
				t.Errorf("MAIL with REQUIRETLS: %v, want %v", rcvd[0].RequireTLS, c.wantPeerParam)
			} else if status != "delivered" && len(rcvd) != 0 {
				t.Errorf("the peer got the message")
			}
			msgs, _ := d.cfg.Queue.List()
			var dsns []*queue.Message
			for _, x := range msgs {
				if x.ID != m.ID {
					dsns = append(dsns, x)
				}
			}
			if (len(dsns) == 1) != c.wantDSN || len(dsns) > 1 {
				t.Fatalf("%d DSNs, want one: %v", len(dsns), c.wantDSN)
			}
			if c.wantDSN {
				dsn, _ := dsnOf(t, d)
				if !dsns[0].RequireTLS || !strings.Contains(dsn, "Status: 5.7.30") || !strings.Contains(dsn, "text/rfc822-headers") || strings.Contains(dsn, "hello") {
					t.Errorf("the DSN (requiretls %v) is not a REQUIRETLS one with 5.7.30 and the header only:\n%s", dsns[0].RequireTLS, dsn)
				}
			}
			for _, o := range rep.list() {
				if o.RequireTLS != (c.requireTLS && c.from != "-") || o.TLSOptional != (c.tlsNo && !c.requireTLS) {
					t.Errorf("outcome for %+v", o.TLSDestination)
				}
			}
		})
	}
}

// TestRequireTLSPlan: what REQUIRETLS and TLS-Required: No make of a
// policy's plan.
func TestRequireTLSPlan(t *testing.T) {
	opp, _ := Opportunistic{}.TLSPlan(context.Background(), TLSDestination{})
	verified := TLSRequirement{Mode: TLSVerified, Required: true}
	testing := TLSPlan{Policy: "sts", Requirements: []TLSRequirement{verified, {Mode: TLSNone}}}
	for _, c := range []struct {
		name string
		dest TLSDestination
		plan TLSPlan
		want []TLSMode // "" for a refusal
	}{
		{"MX, no policy", TLSDestination{Transport: "direct", Domain: "example.com", Host: "mx.example.com"}, opp, nil},
		{"MX, MTA-STS testing", TLSDestination{Transport: "direct", Domain: "example.com", Host: "mx.example.com"}, testing, nil},
		{"MX, verified", TLSDestination{Transport: "direct", Domain: "example.com", Host: "mx.example.com"},
			TLSPlan{VerifiedBy: VerifiedByDANE, Requirements: []TLSRequirement{verified, {Mode: TLSNone}}}, []TLSMode{TLSVerified}},
		{"implicit MX", TLSDestination{Transport: "direct", Domain: "example.com", Host: "example.com"}, opp, []TLSMode{TLSVerified}},
		{"address literal", TLSDestination{Transport: "direct", Domain: "[192.0.2.1]", Host: "192.0.2.1"}, opp, []TLSMode{TLSVerified}},
		{"relay", TLSDestination{Transport: "smarthost", Host: "relay.example"}, opp, []TLSMode{TLSVerified}},
		{"relay, no verified TLS", TLSDestination{Transport: "smarthost", Host: "relay.example"},
			TLSPlan{Requirements: []TLSRequirement{{Mode: TLSUnverified}}}, nil},
	} {
		got, r := requireTLSPlan(c.dest, c.plan)
		var modes []TLSMode
		if r != nil {
			got.Requirements = nil
		}
		for _, req := range got.Requirements {
			if r == nil && !req.Required {
				t.Errorf("%s: a requirement not required", c.name)
			}
			modes = append(modes, req.Mode)
		}
		switch {
		case c.want == nil && (r == nil || r.Enhanced != "5.7.30" || !r.Permanent):
			t.Errorf("%s: %+v, want 5.7.30", c.name, r)
		case c.want != nil && (r != nil || strings.Join(modesText(modes), ",") != strings.Join(modesText(c.want), ",")):
			t.Errorf("%s: %v %+v, want %v", c.name, modes, r, c.want)
		}
	}
	for _, c := range []struct {
		plan TLSPlan
		want string
	}{
		{TLSPlan{Requirements: []TLSRequirement{verified}}, "verified,unverified,none"},
		{testing, "verified,none"},
		{opp, "verified,unverified,none"},
		{TLSPlan{Requirements: []TLSRequirement{{Mode: TLSUnverified, Required: true}}}, "unverified,unverified,none"},
	} {
		var modes []TLSMode
		for _, r := range optionalPlan(c.plan).Requirements {
			modes = append(modes, r.Mode)
		}
		if got := strings.Join(modesText(modes), ","); got != c.want {
			t.Errorf("optional %v: %s, want %s", c.plan.Requirements, got, c.want)
		}
	}
}

func modesText(ms []TLSMode) []string {
	var s []string
	for _, m := range ms {
		s = append(s, string(m))
	}
	return s
}

// TestDestinations: what a destination's servers offered is remembered
// across a restart; a host that offered STARTTLS and stops is a
// downgrade, logged and counted; the memory is bounded.
func TestDestinations(t *testing.T) {
	cert, pool := testlib.Certificate("mx.example.com")
	path := filepath.Join(t.TempDir(), "destinations.json")
	dests, err := OpenDestinations(path, 2)
	if err != nil {
		t.Fatal(err)
	}
	var log testlib.Buffer
	deliverTo := func(tlsOn bool) {
		t.Helper()
		p := newPeer(t, func(s *smtp.Server) {
			if tlsOn {
				s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
				s.EnableREQUIRETLS = true
			}
		})
		d := newDeliverer(t, Config{Resolver: loopbackMX("example.com"), Port: p.Port, RootCAs: pool, Destinations: dests,
			Log: slog.New(slog.NewTextHandler(&log, nil))})
		m := &queue.Message{From: "sender@example.net", Recipients: []queue.Recipient{{Address: "a@example.com"}}}
		queueMessage(t, d, m)
		d.process(context.Background(), m.ID)
		if len(p.Received()) != 1 {
			t.Fatal("not delivered")
		}
	}
	deliverTo(true)
	if got := dests.List(); len(got) != 1 || !got[0].STARTTLS || !got[0].REQUIRETLS || got[0].Host != "mx.example.com" || got[0].Downgrades != 0 {
		t.Fatalf("remembered %+v", got)
	}
	if err := dests.Save(); err != nil {
		t.Fatal(err)
	}
	dests, err = OpenDestinations(path, 2)
	if err != nil {
		t.Fatal(err)
	}
	before := downgradesTotal.Value()
	deliverTo(false)
	got := dests.List()
	if len(got) != 1 || got[0].STARTTLS || got[0].REQUIRETLS || got[0].Downgrades != 1 || got[0].LastDowngrade.IsZero() {
		t.Errorf("after a session without STARTTLS: %+v", got)
	}
	if downgradesTotal.Value() != before+1 || !strings.Contains(log.String(), "offered STARTTLS before offers none") {
		t.Errorf("the downgrade was not counted or logged:\n%s", log.String())
	}
	for _, dom := range []string{"a.example", "b.example", "c.example"} {
		dests.note(TLSOutcome{TLSDestination: TLSDestination{Transport: "direct", Domain: dom, Host: "mx." + dom}, STARTTLS: true, Achieved: TLSUnverified},
			got[0].Updated.Add(1), slog.New(slog.DiscardHandler))
	}
	if got := dests.List(); len(got) != 2 || got[0].Domain != "b.example" || got[1].Domain != "c.example" {
		t.Errorf("bounded to 2, the oldest forgotten: %+v", got)
	}
}
