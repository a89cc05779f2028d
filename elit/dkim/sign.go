package dkim

import (
	"bufio"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// DefaultHeaders returns the fields Signer signs unless told otherwise
// (RFC 6376 §5.4.1 lists what a signature should cover): the originator
// and recipient fields, subject, date, identifiers and threading, the
// MIME fields, and the mailing-list fields (RFC 2369, RFC 2919, RFC 8058).
func DefaultHeaders() []string {
	return []string{
		"From", "To", "Cc", "Subject", "Date", "Message-ID", "Reply-To",
		"In-Reply-To", "References", "MIME-Version", "Content-Type",
		"Content-Transfer-Encoding", "List-Id", "List-Unsubscribe",
		"List-Unsubscribe-Post", "List-Post", "List-Help", "List-Subscribe",
		"List-Owner", "List-Archive",
	}
}

// A Signer makes DKIM signatures (RFC 6376 §5) for one domain, selector
// and key.
type Signer struct {
	Domain   string // d=
	Selector string // s=
	// Key is an *rsa.PrivateKey (rsa-sha256, at least 1024 bits, RFC
	// 8301; GenerateKey makes 2048) or an ed25519.PrivateKey
	// (ed25519-sha256, RFC 8463), or any crypto.Signer with such a
	// public key.
	Key crypto.Signer
	// Identity is i=, the agent or user signed for (RFC 6376 §3.5):
	// "[local-part]@domain", domain being Domain or below it. Empty: no
	// i= (which means "@" + Domain).
	Identity string
	// HeaderCanon and BodyCanon are c=; the zero values are relaxed.
	HeaderCanon, BodyCanon Canon
	// Headers are the fields signed, each as many times as the message
	// has it (RFC 6376 §5.4.2); those it lacks are not listed. Nil means
	// DefaultHeaders().
	Headers []string
	// Oversign are fields listed once more than the message has them, so
	// that none can be added without breaking the signature (RFC 6376
	// §8.15). Nil means From; an empty, non-nil slice none.
	Oversign []string
	// Expiration, when positive, adds x= that long after t=.
	Expiration time.Duration
	// Now is the clock for t=; nil means time.Now.
	Now func() time.Time
}

// Sign reads the message (header and body, CRLF line ends) once and
// returns its DKIM-Signature field, folded into lines of at most 78
// characters, ending with CRLF, to be put at the top of the message.
func (s *Signer) Sign(msg io.Reader) (string, error) {
	fields, err := Sign(msg, s)
	if err != nil {
		return "", err
	}
	return fields[0], nil
}

// Sign reads the message once (its header is kept, its body hashed as it
// is read) and returns one DKIM-Signature field per signer, in their
// order: a message signed with an RSA and an Ed25519 key carries both
// signatures (RFC 8463 §2, §6), and each verifier takes the one it can.
// Each field ends with CRLF; put them all at the top of the message.
func Sign(msg io.Reader, signers ...*Signer) ([]string, error) {
	if len(signers) == 0 {
		return nil, errors.New("dkim: no signer")
	}
	algs := make([]string, len(signers))
	for i, s := range signers {
		alg, err := s.check()
		if err != nil {
			return nil, err
		}
		algs[i] = alg
	}
	br := bufio.NewReaderSize(msg, 16<<10)
	hdr, err := ReadHeader(br)
	if err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	if !hasField(hdr, "From") {
		return nil, errors.New("dkim: the message has no From field, which a signature must cover (RFC 6376 §5.4)")
	}
	// One body hash per canonicalization used.
	var hashers [2]*BodyHasher
	var ws []io.Writer
	for _, s := range signers {
		if hashers[s.BodyCanon] == nil {
			hashers[s.BodyCanon] = NewBodyHasher(s.BodyCanon, sha256.New(), -1)
			ws = append(ws, hashers[s.BodyCanon])
		}
	}
	if err := CopyBody(ws, br); err != nil {
		return nil, fmt.Errorf("dkim: read body: %w", err)
	}
	var sums [2][]byte
	for c, h := range hashers {
		if h != nil {
			sums[c] = h.Sum()
		}
	}
	out := make([]string, len(signers))
	for i, s := range signers {
		f, err := s.field(hdr, algs[i], sums[s.BodyCanon])
		if err != nil {
			return nil, err
		}
		out[i] = f
	}
	return out, nil
}

// check validates the signer and returns its algorithm.
func (s *Signer) check() (string, error) {
	if !validDomain(s.Domain) {
		return "", fmt.Errorf("dkim: bad domain %q", s.Domain)
	}
	if !validSelector(s.Selector) {
		return "", fmt.Errorf("dkim: bad selector %q", s.Selector)
	}
	if s.Key == nil {
		return "", errors.New("dkim: no key")
	}
	alg, err := Algorithm(s.Key)
	if err != nil {
		return "", fmt.Errorf("dkim: %w", err)
	}
	if s.Identity != "" {
		at := strings.LastIndexByte(s.Identity, '@')
		if at < 0 || !inDomain(s.Identity[at+1:], s.Domain) || !validValue(s.Identity) {
			return "", fmt.Errorf("dkim: identity %q is not [local-part]@ %s or a subdomain", s.Identity, s.Domain)
		}
	}
	if s.HeaderCanon > Simple || s.BodyCanon > Simple {
		return "", errors.New("dkim: unknown canonicalization")
	}
	return alg, nil
}

// validValue reports whether v may be written as a tag value as it is
// (VALCHAR, RFC 6376 §3.2).
func validValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] < 0x21 || v[i] > 0x7e || v[i] == ';' {
			return false
		}
	}
	return true
}

func hasField(hdr Header, name string) bool {
	for _, f := range hdr {
		if f.Is(name) {
			return true
		}
	}
	return false
}

// SignedNames returns the h= list for hdr: each of names as many times
// as hdr has it, plus once for each of oversign (RFC 6376 §5.4.2,
// §8.15), lowercased, names absent and not over-signed left out.
func SignedNames(hdr Header, names, oversign []string) []string {
	count := make(map[string]int)
	for _, f := range hdr {
		count[strings.ToLower(f.Name)]++
	}
	over := make(map[string]bool)
	for _, n := range oversign {
		over[strings.ToLower(n)] = true
	}
	var out []string
	seen := make(map[string]bool)
	add := func(n string) {
		n = strings.ToLower(n)
		if seen[n] {
			return
		}
		seen[n] = true
		k := count[n]
		if over[n] {
			k++
		}
		for range k {
			out = append(out, n)
		}
	}
	for _, n := range names {
		add(n)
	}
	for _, n := range oversign {
		add(n)
	}
	return out
}

func (s *Signer) field(hdr Header, alg string, bodyHash []byte) (string, error) {
	names := s.Headers
	if names == nil {
		names = DefaultHeaders()
	}
	oversign := s.Oversign
	if oversign == nil {
		oversign = []string{"From"}
	}
	h := SignedNames(hdr, names, oversign)
	for _, n := range h {
		if !validFieldName(n) {
			return "", fmt.Errorf("dkim: bad field name %q", n)
		}
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	t := now().Unix()

	f := NewFolder("DKIM-Signature:")
	f.Tag("v=1;")
	f.Tag("a=" + alg + ";")
	f.Tag("c=" + s.HeaderCanon.String() + "/" + s.BodyCanon.String() + ";")
	f.Tag("d=" + s.Domain + ";")
	f.Tag("s=" + s.Selector + ";")
	if s.Identity != "" {
		f.Tag("i=" + s.Identity + ";")
	}
	f.Tag("t=" + strconv.FormatInt(t, 10) + ";")
	if s.Expiration > 0 {
		f.Tag("x=" + strconv.FormatInt(t+max(int64(s.Expiration/time.Second), 1), 10) + ";")
	}
	f.List("h=", h, ":", ";")
	f.Base64("bh=", base64.StdEncoding.EncodeToString(bodyHash), ";")
	f.BTag()
	digest := HeaderHash(s.HeaderCanon, hdr, h, []byte(f.String()))
	sig, err := SignDigest(s.Key, digest)
	if err != nil {
		return "", fmt.Errorf("dkim: %w", err)
	}
	f.Base64("", base64.StdEncoding.EncodeToString(sig), "")
	return f.String() + "\r\n", nil
}

// MaxLineLength is the length Signer and the ARC sealer fold lines to
// (RFC 5322 §2.1.1: SHOULD be no more than 78 characters).
const MaxLineLength = 78

// Folder builds a header field of tags, folding its lines at
// MaxLineLength where a tag list allows whitespace: between tags, after a
// colon of a list, and anywhere in base64 (RFC 6376 §3.5).
type Folder struct {
	b   strings.Builder
	col int
}

// NewFolder starts a field with its name and colon ("ARC-Seal:").
func NewFolder(name string) *Folder {
	f := &Folder{}
	f.b.WriteString(name)
	f.col = len(name)
	return f
}

// String returns the field so far (no final CRLF).
func (f *Folder) String() string { return f.b.String() }

func (f *Folder) fold() {
	f.b.WriteString("\r\n ")
	f.col = 1
}

// word writes w after a space, or at the start of a new line when it
// would not fit.
func (f *Folder) word(w string, space bool) {
	sep := 0
	if space {
		sep = 1
	}
	if f.col+sep+len(w) > MaxLineLength && f.col > 1 {
		f.fold()
		sep = 0
	}
	if sep == 1 {
		f.b.WriteByte(' ')
	}
	f.b.WriteString(w)
	f.col += sep + len(w)
}

// Tag writes a tag ("d=example.org;") after a space or a fold.
func (f *Folder) Tag(t string) { f.word(t, true) }

// List writes a tag whose value is items joined by sep ("h=from:to;"),
// folding after a separator where needed; end follows the last item.
func (f *Folder) List(prefix string, items []string, sep, end string) {
	for i, it := range items {
		w := it + sep
		if i == 0 {
			w = prefix + w
		}
		if i == len(items)-1 {
			w = it + end
			if i == 0 {
				w = prefix + w
			}
		}
		f.word(w, i == 0)
	}
	if len(items) == 0 {
		f.word(prefix+end, true)
	}
}

// Base64 writes a tag with a base64 value ("bh=...;"), filling lines and
// folding inside the value. With an empty prefix it continues the value
// of the tag written last (the b= of BTag).
func (f *Folder) Base64(prefix, value, end string) {
	if prefix != "" {
		// A value that fits on a line of its own is not cut (bh=);
		// else the tag name and a few characters of the value go on
		// one line.
		whole := 1 + len(prefix) + len(value) + len(end)
		if f.col+whole > MaxLineLength && whole <= MaxLineLength || f.col+1+len(prefix)+8 > MaxLineLength {
			f.fold()
		} else {
			f.b.WriteByte(' ')
			f.col++
		}
		f.b.WriteString(prefix)
		f.col += len(prefix)
	}
	value += end
	for value != "" {
		room := MaxLineLength - f.col
		if room <= 0 {
			f.fold()
			continue
		}
		n := min(room, len(value))
		// Keep the end (";") with the value's last characters.
		if n < len(value) && len(value)-n < len(end)+1 {
			n = len(value) - len(end) - 1
		}
		if n <= 0 {
			f.fold()
			continue
		}
		f.b.WriteString(value[:n])
		f.col += n
		value = value[n:]
	}
}

// BTag writes "b=", with room left on its line for the start of the
// value that Base64("", ...) writes once signed: the field up to here is
// what gets hashed, and no whitespace may follow "b=" directly (a
// verifier that strips only the value, not the whitespace around it,
// would hash something else).
func (f *Folder) BTag() {
	if f.col+1+2+8 > MaxLineLength {
		f.fold()
	} else {
		f.b.WriteByte(' ')
		f.col++
	}
	f.b.WriteString("b=")
	f.col += 2
}
