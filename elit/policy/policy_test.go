package policy

import (
	"context"
	"strings"
	"testing"
	"time"

	"elit.local/elit/decide"
	"elit.local/elit/lists"
	"elit.local/elit/mailaddr"
	"elit.local/elit/reply"
	"elit.local/elit/srs"
	"elit.local/elit/userdb"
)

func testDB(t *testing.T) func() *userdb.DB {
	t.Helper()
	secrets, err := userdb.Hash("demo", false)
	if err != nil {
		t.Fatal(err)
	}
	db, err := userdb.Parse([]byte(`[{"name":"din","password":"`+secrets.Password+`","mailboxes":["r@example.com"]},
		{"name":"team","mailboxes":["r@example.com","h@example.net"]},
		{"name":"bob@other.org","password":"`+secrets.Password+`","mailboxes":["b@example.com"]}]`), "example.org")
	if err != nil {
		t.Fatal(err)
	}
	return func() *userdb.DB { return db }
}

func rcpt(addr string) *decide.Rcpt {
	a, _ := mailaddr.Parse(addr)
	if strings.EqualFold(addr, "postmaster") {
		a = mailaddr.Address{Local: addr}
	}
	return &decide.Rcpt{Address: addr, Addr: a}
}

func code(err error) string {
	if err == nil {
		return "ok"
	}
	if r, ok := reply.As(err); ok {
		return r.Error()[:9]
	}
	return err.Error()
}

func TestRoute(t *testing.T) {
	key := []byte("policy test key")
	signer := lists.NewSigner(key)
	rw := &srs.SRS{Key: key, Domain: "example.org"}
	srsAddr, _ := rw.Forward("boss@victim.test")
	var recorded []string
	rt := &Route{Users: testDB(t), Postmaster: "din@example.org", SRS: rw, ListSigner: signer,
		ListBounce: func(list, member, reason string) { recorded = append(recorded, list+" "+member) }}
	for _, c := range []struct {
		user, to string
		want     string   // reply code or ok
		targets  []string // where it goes
		list     string
	}{
		{"", "din@example.org", "ok", []string{"r@example.com"}, ""},
		{"", "DIN@Example.ORG", "ok", []string{"r@example.com"}, ""},
		{"", "team@example.org", "ok", []string{"r@example.com", "h@example.net"}, "team@example.org"},
		{"", "bob@other.org", "ok", []string{"b@example.com"}, ""},
		{"", "nobody@example.org", "550 5.1.1", nil, ""},
		{"", "postmaster@example.org", "ok", []string{"r@example.com"}, ""},
		{"", "Postmaster", "ok", []string{"r@example.com"}, ""},
		{"", "boss@victim.test", "554 5.7.1", nil, ""},
		{"din", "boss@victim.test", "ok", []string{"boss@victim.test"}, ""},
		{"", srsAddr, "ok", []string{"boss@victim.test"}, ""},
		{"", strings.Replace(srsAddr, "=boss@", "=mallory@", 1), "550 5.1.1", nil, ""},
		{"", signer.BounceAddress("team@example.org", "h@example.net"), "ok", nil, ""},
		{"", signer.BounceAddress("team@example.org", "x@example.net"), "550 5.1.1", nil, ""},
		{"", "team+bounces=h=example.net@example.org", "550 5.1.1", nil, ""},
	} {
		t.Run(c.user+" "+c.to, func(t *testing.T) {
			tx := decide.NewTransaction(&decide.Session{User: c.user}, "x@example.net", decide.Params{})
			r := rcpt(c.to)
			err := rt.Rcpt(context.Background(), tx, r)
			if code(err) != c.want {
				t.Fatalf("%s: %v", c.to, err)
			}
			var got []string
			for _, x := range tx.Recipients {
				got = append(got, x.Address)
				if x.List != c.list {
					t.Errorf("list %q", x.List)
				}
			}
			if strings.Join(got, " ") != strings.Join(c.targets, " ") || (err == nil) != r.Routed() {
				t.Errorf("targets %q routed %v", got, r.Routed())
			}
		})
	}
	// A list bounce is recorded once the transaction is accepted.
	tx := decide.NewTransaction(&decide.Session{}, "", decide.Params{})
	rt.Rcpt(context.Background(), tx, rcpt(signer.BounceAddress("team@example.org", "h@example.net")))
	if len(recorded) != 0 || tx.NoMessage == "" {
		t.Fatalf("before: %q %q", recorded, tx.NoMessage)
	}
	tx.Accepted()
	if strings.Join(recorded, ",") != "team@example.org h@example.net" {
		t.Errorf("recorded %q", recorded)
	}
}

func TestRouteSRSForward(t *testing.T) {
	rw := &srs.SRS{Key: []byte("k"), Domain: "example.org", Now: func() time.Time { return time.Unix(2e9, 0) }}
	rt := &Route{Users: testDB(t), SRS: rw}
	for _, c := range []struct {
		user, from string
		rewritten  bool
	}{
		{"", "alice@example.net", true},
		{"", "", false},
		{"", "din@example.org", false},
		{"din", "din@example.org", false},
	} {
		tx := decide.NewTransaction(&decide.Session{User: c.user}, c.from, decide.Params{})
		tx.Route(rcpt("din@example.org"), "", "r@example.com")
		rt.Data(context.Background(), tx, &decide.Message{})
		if got := strings.HasPrefix(tx.From, "SRS0=") && tx.OrigFrom == c.from; got != c.rewritten {
			t.Errorf("%q %q: from %q orig %q", c.user, c.from, tx.From, tx.OrigFrom)
		}
	}
}

func TestSender(t *testing.T) {
	s := &Sender{Users: testDB(t)}
	for _, c := range []struct {
		user, from string
		header     []decide.Field
		mail, data string
	}{
		{"din", "din@example.org", []decide.Field{{Name: "From", Value: " Din <din@example.org>"}}, "ok", "ok"},
		{"din", "team@example.org", []decide.Field{{Name: "From", Value: " team@example.org"}}, "ok", "ok"},
		{"din", "bob@other.org", nil, "550 5.7.1", ""},
		{"din", "din@example.org", []decide.Field{{Name: "From", Value: " bob@other.org"}}, "ok", "550 5.7.1"},
		{"din", "din@example.org", nil, "ok", "550 5.6.0"},
		{"din", "din@example.org", []decide.Field{{Name: "From", Value: " din@example.org"}, {Name: "from", Value: " din@example.org"}}, "ok", "550 5.6.0"},
		{"din", "din@example.org", []decide.Field{{Name: "From", Long: true}}, "ok", "550 5.6.0"},
		{"", "anyone@example.net", nil, "ok", "ok"},
	} {
		tx := decide.NewTransaction(&decide.Session{User: c.user}, c.from, decide.Params{})
		if got := code(s.Mail(context.Background(), tx)); got != c.mail {
			t.Errorf("%s %s: MAIL %s", c.user, c.from, got)
			continue
		}
		if c.data == "" {
			continue
		}
		if got := code(s.Data(context.Background(), tx, &decide.Message{Header: c.header})); got != c.data {
			t.Errorf("%s %+v: DATA %s", c.user, c.header, got)
		}
	}
}

func TestHops(t *testing.T) {
	h := &Hops{Max: 3}
	for n, want := range []string{"ok", "ok", "ok", "554 5.4.6"} {
		m := &decide.Message{}
		for range n {
			m.Header = append(m.Header, decide.Field{Name: "Received", Value: " x"})
		}
		if got := code(h.Data(context.Background(), nil, m)); got != want {
			t.Errorf("%d Received: %s", n, got)
		}
	}
}
