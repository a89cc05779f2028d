package srs

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
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

// oldForward makes an address the way Elit did before the hash grew: 4
// base64 characters of an HMAC-SHA1 of the fields run together.
func oldForward(s *SRS, addr string) string {
	local, domain, _ := strings.Cut(addr, "@")
	stamp := s.stamp()
	m := hmac.New(sha1.New, s.Key)
	for _, p := range []string{stamp, domain, local} {
		m.Write([]byte(strings.ToLower(p)))
	}
	h := base64.StdEncoding.EncodeToString(m.Sum(nil))[:4]
	return "SRS0=" + h + "=" + stamp + "=" + domain + "=" + local + "@" + s.Domain
}

// TestGuessing: the hash is long, exact and covers every field, so that an
// address cannot be guessed or made from another one.
func TestGuessing(t *testing.T) {
	s := newSRS(20000)
	fwd, _ := s.Forward("boss@victim.test")
	h, _, _ := strings.Cut(strings.TrimPrefix(fwd, "SRS0="), "=")
	if len(h) != HashLen || HashLen*5 < 64 {
		t.Fatalf("hash %q: %d characters", h, len(h))
	}
	// An address made as Elit made them before is refused: 4 characters
	// were about 2 million values, found by brute force in seconds.
	old := oldForward(s, "boss@victim.test")
	if _, err := s.Reverse(old); !errors.Is(err, ErrBadHash) {
		t.Errorf("old form %s: %v", old, err)
	}
	// Every change of the hash is refused, and so is a prefix of it.
	for i := range h {
		for _, c := range alphabet {
			if byte(c) == h[i] {
				continue
			}
			bad := strings.Replace(fwd, h, h[:i]+string(c)+h[i+1:], 1)
			if _, err := s.Reverse(bad); !errors.Is(err, ErrBadHash) {
				t.Fatalf("%s: %v", bad, err)
			}
		}
	}
	if _, err := s.Reverse(strings.Replace(fwd, h, h[:4], 1)); !errors.Is(err, ErrBadHash) {
		t.Errorf("short hash accepted")
	}
	// Moving the boundary between domain and local part keeps the same
	// characters but must not keep a valid hash.
	a, _ := s.Forward("a@ex.com")
	shifted := strings.Replace(a, "=ex.com=a@", "=ex.co=ma@", 1)
	if _, err := s.Reverse(shifted); !errors.Is(err, ErrBadHash) {
		t.Errorf("shifted fields %s: %v", shifted, err)
	}
}

// A foreign forwarder's SRS1 (postsrsd: a 4-character hash) is forwarded
// with our own hash, and comes back.
func TestForeignSRS1(t *testing.T) {
	s := newSRS(20000)
	foreign := "SRS1=Abc+=first.example==XyZ1=AB=example.net=alice@relay.example"
	fwd, err := s.Forward(foreign)
	if err != nil || !strings.HasPrefix(fwd, "SRS1=") || !strings.Contains(fwd, "=first.example==XyZ1=AB=example.net=alice@example.org") {
		t.Fatalf("Forward = %q %v", fwd, err)
	}
	back, err := s.Reverse(fwd)
	if err != nil || back != "SRS0=XyZ1=AB=example.net=alice@first.example" {
		t.Errorf("Reverse = %q %v", back, err)
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
