package srs

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func newSRS(day int) *SRS {
	return &SRS{Key: []byte("test key"), Domain: "example.org",
		Now: func() time.Time { return time.Unix(int64(day)*86400+3600, 0) }}
}

func TestRoundTrip(t *testing.T) {
	s := newSRS(20000)
	for _, addr := range []string{"alice@example.net", "a.b+tag@Sub.Example.NET", "\"odd user\"@example.net"} {
		fwd, err := s.Forward(addr)
		if err != nil || !strings.HasPrefix(fwd, "SRS0=") || !strings.HasSuffix(fwd, "@example.org") {
			t.Fatalf("Forward(%q) = %q, %v", addr, fwd, err)
		}
		back, err := s.Reverse(fwd)
		if err != nil || back != addr {
			t.Errorf("Reverse(%q) = %q, %v; want %q", fwd, back, err, addr)
		}
		// Some MTAs change the case of the local part.
		if back, err := s.Reverse(strings.ToLower(fwd)); err != nil || !strings.EqualFold(back, addr) {
			t.Errorf("lowercased: %q %v", back, err)
		}
	}
	for _, same := range []string{"", "bob@example.org", "bob@EXAMPLE.ORG"} {
		if got, _ := s.Forward(same); got != same {
			t.Errorf("Forward(%q) = %q", same, got)
		}
	}
}

func TestSRS1(t *testing.T) {
	other := &SRS{Key: []byte("other key"), Domain: "first.example", Now: newSRS(20000).Now}
	srs0, _ := other.Forward("alice@example.net")
	s := newSRS(20000)
	srs1, err := s.Forward(srs0)
	if err != nil || !strings.HasPrefix(srs1, "SRS1=") || !strings.Contains(srs1, "=first.example==") {
		t.Fatalf("SRS1 = %q %v", srs1, err)
	}
	back, err := s.Reverse(srs1)
	if err != nil || back != srs0 {
		t.Fatalf("Reverse(SRS1) = %q %v, want %q", back, err, srs0)
	}
	if orig, err := other.Reverse(back); err != nil || orig != "alice@example.net" {
		t.Errorf("first hop: %q %v", orig, err)
	}
	// Forwarding our SRS1 through a third forwarder keeps the first hop.
	third := &SRS{Key: []byte("third"), Domain: "third.example", Now: s.Now}
	again, err := third.Forward(srs1)
	if err != nil || !strings.Contains(again, "=first.example==") {
		t.Errorf("SRS1 of SRS1: %q %v", again, err)
	}
	if back, err := third.Reverse(again); err != nil || back != srs0 {
		t.Errorf("Reverse: %q %v", back, err)
	}
}

func TestReverseRefuses(t *testing.T) {
	s := newSRS(20000)
	fwd, _ := s.Forward("alice@example.net")
	tampered := strings.Replace(fwd, "alice", "mallory", 1)
	for _, c := range []struct {
		addr string
		err  error
	}{
		{"alice@example.org", ErrNotSRS},
		{tampered, ErrBadHash},
		{"SRS0=abcd=AA@example.org", ErrMalformed},
		{"SRS1=x@example.org", ErrMalformed},
		{"SRS0=" + strings.Repeat("=", 10) + "@example.org", ErrMalformed},
	} {
		if _, err := s.Reverse(c.addr); !errors.Is(err, c.err) {
			t.Errorf("Reverse(%q): %v, want %v", c.addr, err, c.err)
		}
	}
	// Age: fine after 21 days, expired after 22; a day ahead is tolerated.
	if _, err := newSRS(20021).Reverse(fwd); err != nil {
		t.Errorf("21 days: %v", err)
	}
	if _, err := newSRS(20022).Reverse(fwd); !errors.Is(err, ErrExpired) {
		t.Errorf("22 days: %v", err)
	}
	if _, err := newSRS(19999).Reverse(fwd); err != nil {
		t.Errorf("clock behind a day: %v", err)
	}
	// Another key does not validate.
	if _, err := (&SRS{Key: []byte("other"), Domain: "example.org", Now: s.Now}).Reverse(fwd); !errors.Is(err, ErrBadHash) {
		t.Errorf("other key: %v", err)
	}
}

func FuzzReverse(f *testing.F) {
	s := newSRS(20000)
	fwd, _ := s.Forward("alice@example.net")
	f.Add(fwd)
	f.Add("SRS1=abcd=first.example==abcd=AA=example.net=alice@example.org")
	f.Add("SRS0==@")
	f.Fuzz(func(t *testing.T, addr string) {
		back, err := s.Reverse(addr)
		if err == nil && back == "" {
			t.Errorf("%q: empty result", addr)
		}
		s.Forward(addr)
	})
}
