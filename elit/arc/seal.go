package arc

import (
	"bufio"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"elit.local/elit/dkim"
)

// ErrChainFailed is returned by Seal for a message whose newest ARC-Seal
// already says cv=fail: the chain ended there (RFC 8617 §5.2 step 2 fails
// it whatever follows), so no set is added; forward the message as it
// is.
var ErrChainFailed = errors.New("arc: the chain was marked failed (cv=fail) by an earlier hop")

// A Sealer adds our ARC set to messages (RFC 8617 §5.1).
type Sealer struct {
	Domain   string // d= of the ARC-Message-Signature and the ARC-Seal
	Selector string // s=
	// Key is an *rsa.PrivateKey (rsa-sha256, the algorithm of RFC 8617
	// and the one other verifiers know) or an ed25519.PrivateKey
	// (ed25519-sha256, as in DKIM, RFC 8463).
	Key crypto.Signer
	// Headers are the fields the ARC-Message-Signature signs, each as
	// often as present (RFC 8617 §4.1.2: like a DKIM signature). Nil
	// means dkim.DefaultHeaders() and DKIM-Signature (§4.1.2: the AMS
	// SHOULD cover the DKIM signatures present). ARC-Seal and
	// Authentication-Results may not be among them (§4.1.2, §4.1.3).
	Headers []string
	// Oversign are fields listed once more than present; nil means From.
	Oversign []string
	// Now is the clock for t=; nil means time.Now.
	Now func() time.Time

	// standardize writes the fields in the ValiMail suite's standard
	// form (tags sorted, no folding): for the suite's test only.
	standardize bool
}

// Sealed is the ARC set Seal makes: three complete header fields, each
// ending with CRLF.
type Sealed struct {
	Instance              int
	AuthenticationResults string // ARC-Authentication-Results
	MessageSignature      string // ARC-Message-Signature
	Seal                  string // ARC-Seal
}

// Header returns the set's fields in the order to put them at the top of
// the message, the newest above (as every hop prepends its fields):
// ARC-Seal, ARC-Message-Signature, ARC-Authentication-Results.
func (s *Sealed) Header() string {
	return s.Seal + s.MessageSignature + s.AuthenticationResults
}

// Seal reads the message once and returns the ARC set to add to it,
// instance n+1 for a message that has n sets (RFC 8617 §5.1):
//
//   - ARC-Authentication-Results (§4.1.1): "i=n+1; ", authservID, "; "
//     and results, the Authentication-Results value of this hop after its
//     authserv-id (e.g. "spf=pass smtp.mailfrom=example.org; dkim=...");
//     empty results are "none" (RFC 8601 §2.2);
//   - ARC-Message-Signature (§4.1.2): a DKIM signature with i=n+1 and
//     relaxed/relaxed canonicalization, no l=, over Headers;
//   - ARC-Seal (§4.1.3): i=n+1, cv=chain, over the ARC fields of every
//     set in instance order and ours last (§5.1.1), relaxed.
//
// chain is the status Verify gave the message as it arrived: None for a
// message without sets, Pass, or Fail, for which the seal says cv=fail and
// covers our set alone (§5.1.2). A message whose newest seal already says
// cv=fail gets no set: ErrChainFailed.
func (s *Sealer) Seal(msg io.Reader, authservID, results string, chain Status) (*Sealed, error) {
	alg, err := s.check(authservID, results)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(msg, 16<<10)
	hdr, err := dkim.ReadHeader(br)
	if err != nil {
		return nil, fmt.Errorf("arc: %w", err)
	}
	sets, n, setsErr := ParseSets(hdr)
	if setsErr == nil && len(sets) > 0 {
		if as, err := parseSeal(sets[n-1].AS.Value()); err == nil && as.CV == Fail {
			return nil, ErrChainFailed
		}
	}
	switch chain {
	case None:
		if n > 0 {
			return nil, fmt.Errorf("arc: chain status none for a message with %d ARC sets", n)
		}
	case Pass:
		if n == 0 || setsErr != nil {
			return nil, fmt.Errorf("arc: chain status pass for a message without a sound chain (%d sets, %v)", n, setsErr)
		}
	case Fail:
	default:
		return nil, fmt.Errorf("arc: unknown chain status %q", chain)
	}
	i := n + 1
	if i > MaxSets {
		return nil, fmt.Errorf("arc: the message has %d ARC sets already (at most %d)", n, MaxSets)
	}
	body := dkim.NewBodyHasher(dkim.Relaxed, sha256.New(), -1)
	if err := dkim.CopyBody([]io.Writer{body}, br); err != nil {
		return nil, fmt.Errorf("arc: read body: %w", err)
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	t := strconv.FormatInt(now().Unix(), 10)
	inst := strconv.Itoa(i)

	// ARC-Authentication-Results.
	if results == "" {
		results = "none"
	}
	aar := aarName + ": i=" + inst + "; " + authservID + "; " + results + "\r\n"
	if !strings.ContainsAny(results, "\r\n") && !s.standardize {
		aar = foldText(aar)
	}
	aarField := dkim.Field{Name: aarName, Raw: []byte(aar)}

	// ARC-Message-Signature, over the message with our AAR on top.
	names := s.Headers
	if names == nil {
		names = append(dkim.DefaultHeaders(), "DKIM-Signature")
	}
	oversign := s.Oversign
	if oversign == nil {
		oversign = []string{"From"}
	}
	withAAR := append(dkim.Header{aarField}, hdr...)
	h := dkim.SignedNames(withAAR, names, oversign)
	bh := base64.StdEncoding.EncodeToString(body.Sum())
	amsTags := []tag{{"i", inst}, {"a", alg}, {"c", "relaxed/relaxed"}, {"d", s.Domain},
		{"s", s.Selector}, {"t", t}, {"h", strings.Join(h, ":")}, {"bh", bh}}
	ams, err := s.sign(amsName, amsTags, func(field []byte) []byte {
		return dkim.HeaderHash(dkim.Relaxed, withAAR, h, field)
	})
	if err != nil {
		return nil, err
	}
	amsField := dkim.Field{Name: amsName, Raw: []byte(ams)}

	// ARC-Seal, over the chain and our set (§5.1.1), or our set alone
	// when the chain failed (§5.1.2).
	var fields []dkim.Field
	if chain != Fail {
		fields = sortedARC(sets)
	}
	fields = append(fields, aarField, amsField)
	asTags := []tag{{"i", inst}, {"cv", string(chain)}, {"a", alg}, {"d", s.Domain}, {"s", s.Selector}, {"t", t}}
	as, err := s.sign(sealName, asTags, func(field []byte) []byte {
		return dkim.HashFields(dkim.Relaxed, fields, field)
	})
	if err != nil {
		return nil, err
	}
	return &Sealed{Instance: i, AuthenticationResults: aar, MessageSignature: ams, Seal: as}, nil
}

// check validates the sealer and this hop's results and returns the
// algorithm.
func (s *Sealer) check(authservID, results string) (string, error) {
	if !validDomain(s.Domain) {
		return "", fmt.Errorf("arc: bad domain %q", s.Domain)
	}
	if !validDomain(s.Selector) {
		return "", fmt.Errorf("arc: bad selector %q", s.Selector)
	}
	if s.Key == nil {
		return "", errors.New("arc: no key")
	}
	alg, err := dkim.Algorithm(s.Key)
	if err != nil {
		return "", fmt.Errorf("arc: %w", err)
	}
	for _, h := range s.Headers {
		if strings.EqualFold(h, sealName) || strings.EqualFold(h, "Authentication-Results") {
			return "", fmt.Errorf("arc: the ARC-Message-Signature may not sign %s (RFC 8617 §4.1.2)", h)
		}
	}
	if authservID == "" || strings.ContainsAny(authservID, "; \t\r\n") {
		return "", fmt.Errorf("arc: bad authserv-id %q", authservID)
	}
	// The results go into a header field: line ends only as folds.
	for i := 0; i < len(results); i++ {
		switch results[i] {
		case '\r':
			if i+2 >= len(results) || results[i+1] != '\n' || (results[i+2] != ' ' && results[i+2] != '\t') {
				return "", errors.New("arc: results with a line end that is not a fold")
			}
		case '\n':
			if i == 0 || results[i-1] != '\r' {
				return "", errors.New("arc: results with a bare LF")
			}
		case 0:
			return "", errors.New("arc: results with a NUL")
		}
	}
	return alg, nil
}

type tag struct{ name, value string }

// sign writes a signature field with tags and b=, hashing it with b=
// empty through hash, and returns it ending with CRLF.
func (s *Sealer) sign(name string, tags []tag, hash func(field []byte) []byte) (string, error) {
	var unsigned, signed func(b string) string
	if s.standardize {
		// The suite's form: lowercase values but bh=, spaces removed,
		// tags sorted by name, "; " between, no folding (the form
		// dkimpy writes with standardize=True).
		std := make([]tag, 0, len(tags)+1)
		for _, t := range tags {
			v := strings.ReplaceAll(t.value, " ", "")
			if t.name != "bh" {
				v = strings.ToLower(v)
			}
			std = append(std, tag{t.name, v})
		}
		std = append(std, tag{"b", ""})
		slices.SortFunc(std, func(a, b tag) int { return strings.Compare(a.name, b.name) })
		signed = func(b string) string {
			parts := make([]string, len(std))
			for i, t := range std {
				if t.name == "b" {
					t.value = b
				}
				parts[i] = t.name + "=" + t.value
			}
			return name + ": " + strings.Join(parts, "; ")
		}
		unsigned = signed
	} else {
		f := dkim.NewFolder(name + ":")
		for _, t := range tags {
			switch t.name {
			case "h":
				f.List("h=", strings.Split(t.value, ":"), ":", ";")
			case "bh":
				f.Base64("bh=", t.value, ";")
			default:
				f.Tag(t.name + "=" + t.value + ";")
			}
		}
		f.BTag()
		head := f.String()
		unsigned = func(string) string { return head }
		signed = func(b string) string {
			f.Base64("", b, "")
			return f.String()
		}
	}
	digest := hash([]byte(unsigned("")))
	sig, err := dkim.SignDigest(s.Key, digest)
	if err != nil {
		return "", fmt.Errorf("arc: %w", err)
	}
	return signed(base64.StdEncoding.EncodeToString(sig)) + "\r\n", nil
}

// foldText folds a header field at spaces so that its lines are at most
// dkim.MaxLineLength long where possible. Under relaxed canonicalization,
// the only one ARC hashes its fields with, a fold is the space it
// replaces.
func foldText(field string) string {
	field = strings.TrimSuffix(field, "\r\n")
	var b strings.Builder
	col := 0
	for i, w := range strings.Split(field, " ") {
		if i > 0 {
			if col+1+len(w) > dkim.MaxLineLength && col > 1 {
				b.WriteString("\r\n ")
				col = 1
			} else {
				b.WriteByte(' ')
				col++
			}
		}
		b.WriteString(w)
		col += len(w)
	}
	return b.String() + "\r\n"
}
