// Package srs is the Sender Rewriting Scheme, in the SRS0/SRS1 form of
// Shevek's "Sender Rewriting Scheme" paper (libsrs2, postsrsd): a forwarder
// replaces the envelope sender with an address at its own domain that
// encodes the original, so that SPF passes at the destination, and
// bounces to that address come back to it and are sent on.
//
//	SRS0=HHHHHHHHHHHHH=TT=domain=local@forwarder          (a first forward)
//	SRS1=HHHHHHHHHHHHH=firsthop==HHHH=TT=domain=local@forwarder  (forwarding an SRS0)
//
// An SRS address is a capability: mail to it is relayed to the address it
// encodes. HHHHHHHHHHHHH is a keyed HMAC-SHA256 of the other fields, in
// 13 base32 characters (65 bits): at 100 000 guesses a second for a year,
// an attacker has less than one chance in 10^7 of hitting a valid one,
// whatever the error limits of the server. (postsrsd and libsrs2 use 4
// base64 characters, about 2 million values once compared without case;
// Elit's first addresses did too, and they are refused now.) Base32 does
// not care about case, so an address whose case a relay changed still
// works. TT is a day stamp (two base32 characters, modulo 1024 days) and
// an address expires after MaxAge.
package srs

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors from Reverse.
var (
	ErrNotSRS    = errors.New("not an SRS address")
	ErrBadHash   = errors.New("SRS address with a bad hash")
	ErrExpired   = errors.New("SRS address expired")
	ErrMalformed = errors.New("malformed SRS address")
)

// HashLen is the length of the hash in an SRS address of ours.
const HashLen = 13

const (
	alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567" // RFC 4648 base32
	stampMod = 1024
)

// SRS rewrites addresses for one forwarding domain.
type SRS struct {
	Key    []byte
	Domain string        // our domain: rewritten addresses are @Domain
	MaxAge time.Duration // 21 days when zero, as postsrsd
	Now    func() time.Time
}

func (s *SRS) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *SRS) maxAge() time.Duration {
	if s.MaxAge == 0 {
		return 21 * 24 * time.Hour
	}
	return s.MaxAge
}

// hash is the HMAC of the fields, each in lower case and followed by a NUL
// so that no field can borrow characters from the next.
func (s *SRS) hash(parts ...string) string {
	m := hmac.New(sha256.New, s.Key)
	m.Write([]byte("elit srs\x00"))
	for _, p := range parts {
		m.Write([]byte(strings.ToLower(p)))
		m.Write([]byte{0})
	}
	return base32.StdEncoding.EncodeToString(m.Sum(nil))[:HashLen]
}

// hashOK compares a hash as written (any case) with the right one, in
// constant time.
func hashOK(got, want string) bool {
	return len(got) == HashLen && subtle.ConstantTimeCompare([]byte(strings.ToUpper(got)), []byte(want)) == 1
}

func (s *SRS) stamp() string {
	d := s.now().Unix() / 86400 % stampMod
	return string([]byte{alphabet[d>>5], alphabet[d&31]})
}

// Forward returns the address to use as envelope sender when forwarding
// mail from addr. Addresses at our own domain, and the null sender, stay.
func (s *SRS) Forward(addr string) (string, error) {
	at := strings.LastIndexByte(addr, '@')
	if addr == "" || at < 0 {
		return addr, nil
	}
	local, domain := addr[:at], addr[at+1:]
	if strings.EqualFold(domain, s.Domain) {
		return addr, nil
	}
	switch {
	case hasPrefixFold(local, "SRS1="):
		// Already forwarded twice: keep the first hop's part, rehash.
		// The hash of the forwarder before us is whatever runs up to the
		// first "=", of any length.
		_, rest, _ := strings.Cut(local[5:], "=")
		firstHop, srs0, ok := strings.Cut(rest, "==")
		if !ok || firstHop == "" || srs0 == "" {
			return "", fmt.Errorf("%w: %s", ErrMalformed, addr)
		}
		return "SRS1=" + s.hash(firstHop, srs0) + "=" + firstHop + "==" + srs0 + "@" + s.Domain, nil
	case hasPrefixFold(local, "SRS0="):
		// Forwarding an SRS0 of another forwarder: SRS1 pointing at it.
		rest := local[5:]
		return "SRS1=" + s.hash(domain, rest) + "=" + domain + "==" + rest + "@" + s.Domain, nil
	}
	stamp := s.stamp()
	return "SRS0=" + s.hash(stamp, domain, local) + "=" + stamp + "=" + domain + "=" + local + "@" + s.Domain, nil
}

// Reverse returns where mail to an SRS address of ours goes: the original
// sender for SRS0, the first forwarder's SRS0 address for SRS1. The hash
// must have HashLen characters and match; an address of the old 4-character
// form is refused with ErrBadHash.
func (s *SRS) Reverse(addr string) (string, error) {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return "", ErrNotSRS
	}
	local := addr[:at]
	switch {
	case hasPrefixFold(local, "SRS0="):
		parts := strings.SplitN(local[5:], "=", 4)
		if len(parts) != 4 || len(parts[1]) != 2 || parts[2] == "" || parts[3] == "" {
			return "", fmt.Errorf("%w: %s", ErrMalformed, addr)
		}
		h, stamp, domain, orig := parts[0], parts[1], parts[2], parts[3]
		if !hashOK(h, s.hash(stamp, domain, orig)) {
			return "", fmt.Errorf("%w: %s", ErrBadHash, addr)
		}
		if err := s.checkStamp(stamp); err != nil {
			return "", fmt.Errorf("%w: %s", err, addr)
		}
		return orig + "@" + domain, nil
	case hasPrefixFold(local, "SRS1="):
		h, rest, ok := strings.Cut(local[5:], "=")
		if !ok {
			return "", fmt.Errorf("%w: %s", ErrMalformed, addr)
		}
		firstHop, srs0, ok := strings.Cut(rest, "==")
		if !ok || firstHop == "" || srs0 == "" {
			return "", fmt.Errorf("%w: %s", ErrMalformed, addr)
		}
		if !hashOK(h, s.hash(firstHop, srs0)) {
			return "", fmt.Errorf("%w: %s", ErrBadHash, addr)
		}
		return "SRS0=" + srs0 + "@" + firstHop, nil
	}
	return "", ErrNotSRS
}

// checkStamp accepts stamps from MaxAge ago up to a day ahead.
func (s *SRS) checkStamp(stamp string) error {
	a := strings.IndexByte(alphabet, upper(stamp[0]))
	b := strings.IndexByte(alphabet, upper(stamp[1]))
	if a < 0 || b < 0 {
		return ErrMalformed
	}
	then := int64(a<<5 | b)
	today := s.now().Unix() / 86400 % stampMod
	age := (today - then + stampMod) % stampMod
	if age == stampMod-1 { // tomorrow: a clock a little ahead
		return nil
	}
	if time.Duration(age)*24*time.Hour > s.maxAge() {
		return ErrExpired
	}
	return nil
}

// IsSRS reports whether addr looks like an SRS address.
func IsSRS(addr string) bool {
	return hasPrefixFold(addr, "SRS0=") || hasPrefixFold(addr, "SRS1=")
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

func upper(c byte) byte {
	if c >= 'a' && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}
