package decide

import (
	"context"
	"errors"
	"testing"

	"elit.local/elit/mailaddr"
	"elit.local/elit/reply"
)

// step is a Step made of functions, for tests.
type step struct {
	Nop
	rcpt func(*Transaction, *Rcpt) error
	data func(*Transaction, *Message) error
}

func (s step) Rcpt(_ context.Context, t *Transaction, r *Rcpt) error {
	if s.rcpt == nil {
		return nil
	}
	return s.rcpt(t, r)
}

func (s step) Data(_ context.Context, t *Transaction, m *Message) error {
	if s.data == nil {
		return nil
	}
	return s.data(t, m)
}

func rcpt(addr string) *Rcpt {
	a, _ := mailaddr.Parse(addr)
	return &Rcpt{Address: addr, Addr: a, Notify: "FAILURE"}
}

func TestSteps(t *testing.T) {
	var calls []string
	expand := step{rcpt: func(t *Transaction, r *Rcpt) error {
		calls = append(calls, "expand "+r.Address)
		if r.Addr.Domain == "example.org" {
			t.Route(r, "team@example.org", "a@example.com", "B@Example.com")
		}
		return nil
	}}
	refuse := step{rcpt: func(t *Transaction, r *Rcpt) error {
		calls = append(calls, "refuse "+r.Address)
		return reply.New(550, reply.Enhanced{5, 1, 1}, "no")
	}}
	steps := Steps{expand, refuse}
	tx := NewTransaction(&Session{}, "x@example.net", Params{})
	ctx := context.Background()
	if err := steps.Rcpt(ctx, tx, rcpt("team@example.org")); err != nil {
		t.Fatal(err)
	}
	// The second list member is the first one again: once is enough.
	direct := rcpt("b@example.com")
	if err := steps.Rcpt(ctx, tx, direct); err == nil || err.(*reply.Reply).Code != 550 {
		t.Fatalf("refuse: %v", err)
	}
	if len(tx.Recipients) != 2 || tx.Recipients[1].Address != "B@Example.com" || tx.Recipients[0].Original != "team@example.org" ||
		tx.Recipients[0].List != "team@example.org" || tx.Recipients[0].Notify != "FAILURE" {
		t.Errorf("recipients %+v", tx.Recipients)
	}
	if len(tx.Rcpts) != 1 {
		t.Errorf("rcpts %q", tx.Rcpts)
	}
	if want := "expand team@example.org,expand b@example.com,refuse b@example.com"; join(calls) != want {
		t.Errorf("calls %s", join(calls))
	}
	// A recipient nobody takes is not relayed.
	if err := (Steps{Nop{}}).Rcpt(ctx, tx, rcpt("z@example.net")); !errors.Is(err, ErrNotRouted) {
		t.Errorf("unrouted: %v", err)
	}
}

func TestOnAccept(t *testing.T) {
	tx := NewTransaction(&Session{}, "", Params{})
	n := 0
	tx.OnAccept(func() { n++ })
	tx.Accepted()
	tx.Accepted()
	if n != 1 {
		t.Errorf("ran %d times", n)
	}
}

func TestValues(t *testing.T) {
	m := &Message{Header: []Field{{Name: "Received", Value: " a"}, {Name: "From", Value: " x"}, {Name: "received", Value: " b"}}}
	if got := m.Values("RECEIVED"); len(got) != 2 || got[1].Value != " b" {
		t.Errorf("%+v", got)
	}
}

func join(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += ","
		}
		out += x
	}
	return out
}
