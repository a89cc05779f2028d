package arc

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"

	"elit.local/elit/dkim"
)

// Status is a chain validation status (RFC 8617 §4.4), also the cv= of
// an ARC-Seal and the arc= result of Authentication-Results.
type Status string

// The statuses.
const (
	None Status = "none" // no ARC set
	Pass Status = "pass" // every set verifies
	Fail Status = "fail" // the chain is broken (Result.Err says how)
)

// Result is the validation of a message's chain.
type Result struct {
	Status Status
	Err    error // why the status is fail
	// TempFail is set when the failure came from a key lookup that may
	// succeed later (the error wraps dkim.ErrTemporary): a caller may
	// defer rather than act on the fail.
	TempFail bool
	Sets     int // n, the highest instance (0 for none)
	// OldestPass, with Verifier.OldestPass and a passing chain, is the
	// lowest instance from which every ARC-Message-Signature up to n
	// still verifies (RFC 8617 §5.2 step 5): 1 when all do.
	OldestPass int
	// Seals says who sealed each set, from i=1 (filled when the chain's
	// structure is sound).
	Seals []SealInfo
}

// SealInfo is the signer of one ARC set.
type SealInfo struct {
	Instance int
	CV       Status // the cv= it recorded
	Domain   string // ARC-Seal d=
	Selector string // ARC-Seal s=
}

// A Verifier validates ARC chains (RFC 8617 §5.2).
type Verifier struct {
	Resolver dkim.TXTResolver
	// OldestPass asks for Result.OldestPass: the older
	// ARC-Message-Signatures are verified too, which costs their key
	// lookups.
	OldestPass bool
}

// Verify validates the chain of the message with the keys resolver
// finds.
func Verify(ctx context.Context, resolver dkim.TXTResolver, msg io.Reader) (Result, error) {
	v := &Verifier{Resolver: resolver}
	return v.Verify(ctx, msg)
}

// Verify reads the message once (CRLF line ends) and validates its chain
// (RFC 8617 §5.2). The error is for a message that cannot be read or
// whose header section is malformed.
func (v *Verifier) Verify(ctx context.Context, msg io.Reader) (Result, error) {
	br := bufio.NewReaderSize(msg, 16<<10)
	hdr, err := dkim.ReadHeader(br)
	if err != nil {
		return Result{}, fmt.Errorf("arc: %w", err)
	}
	// Steps 1 and 3.1-3.2: collect the sets, check their structure.
	sets, n, err := ParseSets(hdr)
	res := Result{Status: Fail, Sets: n}
	if err != nil {
		res.Err = err
		return res, nil
	}
	if len(sets) == 0 {
		return Result{Status: None}, nil
	}
	seals := make([]*seal, len(sets))
	for i, s := range sets {
		if seals[i], err = parseSeal(s.AS.Value()); err != nil {
			res.Err = fmt.Errorf("ARC-Seal i=%d: %w", s.Instance, err)
			return res, nil
		}
		res.Seals = append(res.Seals, SealInfo{Instance: s.Instance, CV: seals[i].CV, Domain: seals[i].Domain, Selector: seals[i].Selector})
	}
	// Step 2: a chain a hop marked failed stays failed.
	if cv := seals[n-1].CV; cv == Fail {
		res.Err = fmt.Errorf("ARC-Seal i=%d says cv=fail: the chain was broken before", n)
		return res, nil
	}
	// Step 3.3: cv= none on the first set, pass on the others.
	for i, s := range seals {
		want := Pass
		if i == 0 {
			want = None
		}
		if s.CV != want {
			res.Err = fmt.Errorf("ARC-Seal i=%d has cv=%s, not %s", i+1, s.CV, want)
			return res, nil
		}
	}
	// The message signatures, their body hashes computed in one pass.
	amss := make([]*dkim.Signature, len(sets))
	bodies := make([]*dkim.BodyHasher, len(sets))
	var ws []io.Writer
	for i := len(sets) - 1; i >= 0; i-- {
		if i < len(sets)-1 && !v.OldestPass {
			break
		}
		sig, err := parseAMS(sets[i].AMS)
		if err != nil {
			if i == len(sets)-1 {
				res.Err = fmt.Errorf("ARC-Message-Signature i=%d: %w", n, err)
				return res, nil
			}
			break
		}
		amss[i] = sig
		bodies[i] = dkim.NewBodyHasher(sig.BodyCanon, sha256.New(), sig.Length)
		ws = append(ws, bodies[i])
	}
	if err := dkim.CopyBody(ws, br); err != nil {
		return Result{}, fmt.Errorf("arc: read body: %w", err)
	}
	keys := keyCache{resolver: v.Resolver}
	// Step 4: the newest message signature.
	if err := keys.verifyAMS(ctx, hdr, sets[n-1].AMS, amss[n-1], bodies[n-1]); err != nil {
		res.Err = fmt.Errorf("ARC-Message-Signature i=%d: %w", n, err)
		res.TempFail = errors.Is(err, dkim.ErrTemporary)
		return res, nil
	}
	// Step 6: every seal, newest first.
	for i := n - 1; i >= 0; i-- {
		if err := keys.verifySeal(ctx, sets[:i+1], seals[i]); err != nil {
			res.Err = fmt.Errorf("ARC-Seal i=%d: %w", i+1, err)
			res.TempFail = errors.Is(err, dkim.ErrTemporary)
			return res, nil
		}
	}
	res.Status = Pass
	// Step 5 (optional): how far back the message signatures hold.
	if v.OldestPass {
		res.OldestPass = n
		for i := n - 2; i >= 0 && amss[i] != nil; i-- {
			if keys.verifyAMS(ctx, hdr, sets[i].AMS, amss[i], bodies[i]) != nil {
				break
			}
			res.OldestPass = i + 1
		}
	}
	return res, nil
}

// parseAMS parses an ARC-Message-Signature and applies ARC's rules to it:
// it must not sign ARC-Seal fields (RFC 8617 §4.1.2) and rsa-sha1 is
// refused (RFC 8301).
func parseAMS(f dkim.Field) (*dkim.Signature, error) {
	sig, err := dkim.ParseMessageSignature(f.Value())
	if err != nil {
		return nil, err
	}
	for _, h := range sig.Headers {
		if strings.EqualFold(h, sealName) {
			return nil, errors.New("h= includes ARC-Seal")
		}
	}
	if sig.Algorithm == dkim.RSASHA1 {
		return nil, errors.New("rsa-sha1 is not accepted (RFC 8301)")
	}
	return sig, nil
}

// keyCache looks up each key once per message.
type keyCache struct {
	resolver dkim.TXTResolver
	keys     map[string]keyResult
}

type keyResult struct {
	key *dkim.Key
	err error
}

func (c *keyCache) lookup(ctx context.Context, selector, domain string) (*dkim.Key, error) {
	name := strings.ToLower(dkim.KeyName(selector, domain))
	if r, ok := c.keys[name]; ok {
		return r.key, r.err
	}
	k, err := dkim.LookupKey(ctx, c.resolver, selector, domain)
	if c.keys == nil {
		c.keys = map[string]keyResult{}
	}
	c.keys[name] = keyResult{k, err}
	return k, err
}

// verifyAMS verifies a message signature as DKIM does (RFC 8617 §5.2
// step 4, RFC 6376 §6.1.3), without DKIM's i= and time rules.
func (c *keyCache) verifyAMS(ctx context.Context, hdr dkim.Header, f dkim.Field, sig *dkim.Signature, body *dkim.BodyHasher) error {
	sum := body.Sum()
	if sig.Length >= 0 && body.Len() < sig.Length {
		return fmt.Errorf("l=%d is longer than the body", sig.Length)
	}
	if !bytes.Equal(sum, sig.BodyHash) {
		return errors.New("body hash does not match: the body was changed")
	}
	key, err := c.lookup(ctx, sig.Selector, sig.Domain)
	if err != nil {
		return err
	}
	digest := dkim.HeaderHash(sig.HeaderCanon, hdr, sig.Headers, f.Raw)
	if err := key.VerifyDigest(sig.Algorithm, digest, sig.B); err != nil {
		return err
	}
	return nil
}

// verifySeal verifies the seal of the last of sets: its signature over
// the sets up to it, in order (RFC 8617 §5.1.1), relaxed.
func (c *keyCache) verifySeal(ctx context.Context, sets []Set, s *seal) error {
	key, err := c.lookup(ctx, s.Selector, s.Domain)
	if err != nil {
		return err
	}
	fields := sortedARC(sets)
	last := fields[len(fields)-1]
	digest := dkim.HashFields(dkim.Relaxed, fields[:len(fields)-1], last.Raw)
	return key.VerifyDigest(s.Algorithm, digest, s.B)
}

// decodeB64 decodes a folded base64 value.
func decodeB64(v string) ([]byte, error) {
	v = strings.Map(func(r rune) rune {
		if strings.ContainsRune(" \t\r\n", r) {
			return -1
		}
		return r
	}, v)
	b, err := base64.StdEncoding.Strict().DecodeString(v)
	if err == nil && len(b) == 0 {
		err = errors.New("empty")
	}
	return b, err
}
