package dkim

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"elit.local/elit/dns"
)

// TXTResolver looks up TXT records, each record's strings joined: what
// key lookup needs of elit/dns.Resolver. A name that does not exist is an
// error wrapping dns.ErrNotFound; any other error is taken as temporary.
type TXTResolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// ErrTemporary is wrapped by key lookup errors that a later attempt may
// not have (a timeout, SERVFAIL): temperror (RFC 6376 §6.1.2, RFC 8601
// §2.7.1). Other key errors are permanent.
var ErrTemporary = errors.New("temporary failure")

// Key is a public key record (RFC 6376 §3.6.1), published in TXT at
// selector._domainkey.domain.
type Key struct {
	Type      string           // k=: "rsa" (the default) or "ed25519" (RFC 8463 §4)
	PublicKey crypto.PublicKey // *rsa.PublicKey or ed25519.PublicKey; nil when revoked
	Revoked   bool             // p= is empty: the key was revoked
	Hashes    []string         // h=: the hash algorithms allowed; nil: all
	Services  []string         // s=: "*" (the default) or "email"; others are ignored
	Testing   bool             // t=y: the domain is testing DKIM
	Strict    bool             // t=s: i= must be in d= itself, not a subdomain
	Notes     string           // n=
}

// ParseKey parses a key record (RFC 6376 §3.6.1; RFC 8463 §4 for
// k=ed25519). v=, if present, must be first and DKIM1; p= is required
// (empty: revoked); k= must be rsa or ed25519; p= is a DER
// SubjectPublicKeyInfo for rsa (an RSAPublicKey is accepted too, as some
// publish that) and the 32 octets of the key for ed25519. A record whose
// s= names neither "*" nor "email" is not for mail: an error. Unknown tags
// and flags are ignored.
func ParseKey(record string) (*Key, error) {
	tags, err := ParseTagList(record)
	if err != nil {
		return nil, fmt.Errorf("key record: %w", err)
	}
	k := &Key{Type: "rsa", Services: []string{"*"}}
	var p string
	var hasP bool
	for i, t := range tags {
		switch t.Name {
		case "v":
			if i != 0 || t.Value != "DKIM1" {
				return nil, fmt.Errorf("key record: v=%s (must be DKIM1, first)", t.Value)
			}
		case "h":
			k.Hashes = splitColons(t.Value)
		case "k":
			k.Type = t.Value
		case "n":
			k.Notes = t.Value
		case "p":
			p, hasP = removeWSP(t.Value), true
		case "s":
			k.Services = splitColons(t.Value)
		case "t":
			for _, f := range splitColons(t.Value) {
				switch f {
				case "y":
					k.Testing = true
				case "s":
					k.Strict = true
				}
			}
		}
	}
	if !hasP {
		return nil, errors.New("key record: no p= tag")
	}
	if !k.hasService("email") {
		return nil, fmt.Errorf("key record: s=%s: not for email", strings.Join(k.Services, ":"))
	}
	switch k.Type {
	case "rsa", "ed25519":
	default:
		return nil, fmt.Errorf("key record: unknown key type k=%s", k.Type)
	}
	if p == "" {
		k.Revoked = true
		return k, nil
	}
	der, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		return nil, fmt.Errorf("key record: p=: %w", err)
	}
	switch k.Type {
	case "rsa":
		pub, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			rk, err2 := x509.ParsePKCS1PublicKey(der)
			if err2 != nil {
				return nil, fmt.Errorf("key record: p=: %w", err)
			}
			pub = rk
		}
		rk, ok := pub.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("key record: k=rsa with a %T in p=", pub)
		}
		k.PublicKey = rk
	case "ed25519":
		if len(der) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("key record: ed25519 p= of %d octets (not %d)", len(der), ed25519.PublicKeySize)
		}
		k.PublicKey = ed25519.PublicKey(der)
	}
	return k, nil
}

func (k *Key) hasService(s string) bool {
	for _, v := range k.Services {
		if v == "*" || v == s {
			return true
		}
	}
	return false
}

// allowsHash reports whether the record's h= allows hash (RFC 6376 §3.6.1).
func (k *Key) allowsHash(hash string) bool {
	if k.Hashes == nil {
		return true
	}
	for _, h := range k.Hashes {
		if h == hash {
			return true
		}
	}
	return false
}

// Bits returns the size of an RSA key in bits, 256 for ed25519, 0 when
// there is no key.
func (k *Key) Bits() int {
	switch pub := k.PublicKey.(type) {
	case *rsa.PublicKey:
		return pub.N.BitLen()
	case ed25519.PublicKey:
		return 256
	}
	return 0
}

func splitColons(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ":") {
		if f = strings.Trim(f, " \t\r\n"); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// KeyName returns the DNS name of a key record: selector._domainkey.domain
// (RFC 6376 §3.6.2.1).
func KeyName(selector, domain string) string {
	return selector + "._domainkey." + strings.TrimSuffix(domain, ".")
}

// LookupKey fetches and parses the key record of selector in domain
// (RFC 6376 §3.6.2). With several TXT records it takes the first that
// parses (§3.6.2.2 leaves the choice open). A name that does not exist
// or has no TXT record is a permanent error; a failed lookup wraps
// ErrTemporary.
func LookupKey(ctx context.Context, r TXTResolver, selector, domain string) (*Key, error) {
	name := KeyName(selector, domain)
	txts, err := r.LookupTXT(ctx, name)
	if err != nil {
		if errors.Is(err, dns.ErrNotFound) {
			return nil, fmt.Errorf("no key at %s: %w", name, err)
		}
		return nil, fmt.Errorf("look up key at %s: %w: %w", name, ErrTemporary, err)
	}
	if len(txts) == 0 {
		return nil, fmt.Errorf("no key at %s: no TXT record", name)
	}
	var first error
	for _, txt := range txts {
		k, err := ParseKey(txt)
		if err == nil {
			return k, nil
		}
		if first == nil {
			first = err
		}
	}
	return nil, fmt.Errorf("key at %s: %w", name, first)
}
