package dkim

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Status is the result of verifying one signature, named as in
// Authentication-Results (RFC 8601 §2.7.1).
type Status string

// The statuses. Verify gives:
//   - Pass: the signature verifies.
//   - Fail: it is well formed and the key usable, but the body hash or
//     the signature does not match (the message was changed).
//   - Neutral: the signature has syntax errors (RFC 8601: "contained
//     syntax errors or were not otherwise able to be processed"): an
//     unparsable tag list, a missing required tag, an unknown version,
//     algorithm or canonicalization.
//   - PermError: it cannot verify and never will (RFC 6376 §6.1's
//     PERMFAILs that are not syntax): i= outside d=, From not signed,
//     expired, dated in the future, rsa-sha1 (RFC 8301 §3.1), no key,
//     a revoked, malformed, unsuitable or too small key (RFC 8301 §3.2).
//   - TempError: the key lookup failed in a way that may pass.
//   - Policy: not verified by our policy: signatures past
//     Verifier.MaxSignatures.
//
// None is for callers: a message without signatures.
const (
	None      Status = "none"
	Pass      Status = "pass"
	Fail      Status = "fail"
	Neutral   Status = "neutral"
	Policy    Status = "policy"
	TempError Status = "temperror"
	PermError Status = "permerror"
)

// Result is the verdict on one DKIM-Signature field.
type Result struct {
	Status    Status
	Err       error  // why, when Status is not Pass
	Domain    string // d=
	Selector  string // s=
	Identity  string // i= ("@" + d= when absent)
	Algorithm string // a=
	// HeaderB is the start of b= for Authentication-Results' header.b
	// (RFC 6008 §4): the shortest prefix, 8 characters at least, that no
	// other signature of the message shares.
	HeaderB string
	// Length is l=, -1 when absent. With l= the signature covers only
	// the first Length octets of the canonicalized body (RFC 6376
	// §3.5), and Unsigned counts the octets after them, which anyone
	// may have added: a pass covers only the signed part (§8.2).
	Length   int64
	Unsigned int64
	Testing  bool       // the key says t=y: the domain is testing DKIM
	Sig      *Signature // the parsed signature; nil when it does not parse
}

// DefaultMaxSignatures is how many signatures Verify checks by default;
// the rest get Policy (RFC 6376 §6.1: verifiers MAY limit the number).
const DefaultMaxSignatures = 10

// DefaultClockSkew is how far in the future t= may be by default.
const DefaultClockSkew = time.Hour

// A Verifier verifies DKIM signatures (RFC 6376 §6).
type Verifier struct {
	Resolver      TXTResolver
	Now           func() time.Time // the clock for x= and t=; nil means time.Now
	MaxSignatures int              // 0 means DefaultMaxSignatures
	ClockSkew     time.Duration    // how far t= may be ahead; 0 means DefaultClockSkew
}

// Verify verifies every DKIM-Signature of the message with the default
// limits and the keys resolver finds.
func Verify(ctx context.Context, resolver TXTResolver, msg io.Reader) ([]Result, error) {
	v := &Verifier{Resolver: resolver}
	return v.Verify(ctx, msg)
}

// Verify reads the message once (CRLF line ends; the header is kept, the
// body hashed as it is read) and returns one Result per DKIM-Signature
// field, from the top. The error is for a message that cannot be read or
// whose header section is malformed.
func (v *Verifier) Verify(ctx context.Context, msg io.Reader) ([]Result, error) {
	br := bufio.NewReaderSize(msg, 16<<10)
	hdr, err := ReadHeader(br)
	if err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	limit := v.MaxSignatures
	if limit <= 0 {
		limit = DefaultMaxSignatures
	}
	var results []Result
	var fields []int // index in hdr of each result's field
	var bodies []*BodyHasher
	var ws []io.Writer
	for i, f := range hdr {
		if !f.Is("DKIM-Signature") {
			continue
		}
		r := Result{Length: -1}
		sig, err := ParseSignature(f.Value())
		if err != nil {
			r.Status, r.Err = Neutral, err
		} else {
			r.Sig = sig
			r.Domain, r.Selector, r.Identity, r.Algorithm = sig.Domain, sig.Selector, sig.Identity, sig.Algorithm
			r.Length = sig.Length
		}
		if len(results) >= limit {
			r.Status, r.Err = Policy, fmt.Errorf("over %d signatures: not verified", limit)
		}
		var bh *BodyHasher
		if r.Status == "" {
			if err := v.check(sig); err != nil {
				r.Status, r.Err = PermError, err
			} else {
				bh = NewBodyHasher(sig.BodyCanon, sha256.New(), sig.Length)
				ws = append(ws, bh)
			}
		}
		results = append(results, r)
		fields = append(fields, i)
		bodies = append(bodies, bh)
	}
	setHeaderB(results)
	if len(ws) == 0 {
		return results, nil
	}
	if err := CopyBody(ws, br); err != nil {
		return nil, fmt.Errorf("dkim: read body: %w", err)
	}
	keys := make(map[string]keyResult)
	for i := range results {
		r := &results[i]
		if bodies[i] == nil {
			continue
		}
		sum := bodies[i].Sum()
		if r.Length >= 0 {
			r.Unsigned = max(bodies[i].Len()-r.Length, 0)
			if bodies[i].Len() < r.Length {
				r.Status, r.Err = PermError, fmt.Errorf("l=%d is longer than the body (%d)", r.Length, bodies[i].Len())
				continue
			}
		}
		if !bytes.Equal(sum, r.Sig.BodyHash) {
			r.Status, r.Err = Fail, errors.New("body hash does not match: the body was changed")
			continue
		}
		name := KeyName(r.Selector, r.Domain)
		kr, ok := keys[strings.ToLower(name)]
		if !ok {
			kr.key, kr.err = LookupKey(ctx, v.Resolver, r.Selector, r.Domain)
			keys[strings.ToLower(name)] = kr
		}
		if kr.err != nil {
			r.Status, r.Err = PermError, kr.err
			if errors.Is(kr.err, ErrTemporary) {
				r.Status = TempError
			}
			continue
		}
		r.Testing = kr.key.Testing
		if kr.key.Strict && !strings.EqualFold(identityDomain(r.Identity), r.Domain) {
			r.Status, r.Err = PermError, fmt.Errorf("key has t=s and i=%s is not in d=%s itself", r.Identity, r.Domain)
			continue
		}
		digest := HeaderHash(r.Sig.HeaderCanon, hdr, r.Sig.Headers, hdr[fields[i]].Raw)
		if err := kr.key.VerifyDigest(r.Algorithm, digest, r.Sig.B); err != nil {
			r.Status, r.Err = PermError, err
			if errors.Is(err, errMismatch) {
				r.Status, r.Err = Fail, errors.New("signature does not verify: the header was changed")
			}
			continue
		}
		r.Status = Pass
	}
	return results, nil
}

type keyResult struct {
	key *Key
	err error
}

// check applies the checks of RFC 6376 §6.1.1 that need more than the
// field's syntax, and RFC 8301's ban on rsa-sha1.
func (v *Verifier) check(sig *Signature) error {
	if !inDomain(identityDomain(sig.Identity), sig.Domain) {
		return fmt.Errorf("i=%s is not in d=%s", sig.Identity, sig.Domain)
	}
	from := false
	for _, h := range sig.Headers {
		from = from || strings.EqualFold(h, "From")
	}
	if !from {
		return errors.New("h= does not include From (RFC 6376 §5.4)")
	}
	if sig.Algorithm == RSASHA1 {
		return errors.New("rsa-sha1 is not accepted (RFC 8301 §3.1)")
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	t := now().Unix()
	if sig.Expiration >= 0 && t > sig.Expiration {
		return fmt.Errorf("expired at %s (x=)", time.Unix(sig.Expiration, 0).UTC().Format(time.RFC3339))
	}
	skew := v.ClockSkew
	if skew <= 0 {
		skew = DefaultClockSkew
	}
	if sig.Timestamp >= 0 && sig.Timestamp > t+int64(skew/time.Second) {
		return fmt.Errorf("signed in the future, %s (t=)", time.Unix(sig.Timestamp, 0).UTC().Format(time.RFC3339))
	}
	return nil
}

// setHeaderB fills each result's HeaderB: the shortest prefix of its b=,
// 8 characters at least, that no other signature's b= starts with
// (RFC 6008 §4).
func setHeaderB(results []Result) {
	for i := range results {
		if results[i].Sig == nil {
			continue
		}
		b := results[i].Sig.BString
		n := min(8, len(b))
		for j := range results {
			if j == i || results[j].Sig == nil {
				continue
			}
			o := results[j].Sig.BString
			k := 0
			for k < len(b) && k < len(o) && b[k] == o[k] {
				k++
			}
			n = max(n, min(k+1, len(b)))
		}
		results[i].HeaderB = b[:n]
	}
}
