package dkim

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"strings"
)

// RSA key sizes a verifier accepts: at least 1024 bits (RFC 8301 §3.2:
// smaller keys MUST NOT be considered valid), at most 8192 (RFC 8301 asks
// for 4096 and no one publishes more; it bounds the work a signature
// makes).
const (
	MinRSABits = 1024
	MaxRSABits = 8192
)

// HeaderHash returns the header hash of RFC 6376 §3.7: the fields named
// in names, picked from hdr as §5.4.2 says (each occurrence of a name
// takes the lowest field of that name not taken yet; a name without one
// adds nothing), canonicalized with c, followed by the signature field
// sig (its raw text, as in Field.Raw) with its b= value deleted,
// canonicalized, without its final CRLF. The hash is SHA-256, the only
// one a valid signature uses (RFC 8301 §3.1).
func HeaderHash(c Canon, hdr Header, names []string, sig []byte) []byte {
	return headerHash(sha256.New(), c, hdr, names, sig)
}

func headerHash(h hash.Hash, c Canon, hdr Header, names []string, sig []byte) []byte {
	var picked []Field
	used := make(map[string]int, len(names)) // lowercase name → fields taken from the bottom
	for _, name := range names {
		lname := strings.ToLower(name)
		skip := used[lname]
		used[lname] = skip + 1
		for i := len(hdr) - 1; i >= 0; i-- {
			if !hdr[i].Is(lname) {
				continue
			}
			if skip > 0 {
				skip--
				continue
			}
			picked = append(picked, hdr[i])
			break
		}
	}
	return hashFields(h, c, picked, sig)
}

// HashFields returns the SHA-256 hash of fields, in the order given, and
// then of the signature field sig with its b= value deleted, all
// canonicalized with c, sig without its final CRLF: RFC 6376 §3.7 with
// the fields already picked, as the ARC-Seal needs (RFC 8617 §5.1.1).
func HashFields(c Canon, fields []Field, sig []byte) []byte {
	return hashFields(sha256.New(), c, fields, sig)
}

func hashFields(h hash.Hash, c Canon, fields []Field, sig []byte) []byte {
	buf := make([]byte, 0, 1024)
	for _, f := range fields {
		buf = CanonHeader(buf[:0], c, f.Raw)
		h.Write(buf)
	}
	buf = CanonHeader(buf[:0], c, StripB(sig))
	buf = bytes.TrimSuffix(buf, []byte("\n")) // the line end CanonHeader adds or keeps
	buf = bytes.TrimSuffix(buf, []byte("\r"))
	h.Write(buf)
	return h.Sum(nil)
}

// errMismatch marks a signature that does not verify: fail, not an error
// of the key or the signature's form.
var errMismatch = errors.New("signature mismatch")

// VerifyDigest checks signature sig, made with algorithm alg (a= value)
// over digest, against the key of record k: the key's type must fit the
// algorithm, its h= allow sha256, an RSA key have MinRSABits to
// MaxRSABits, and rsa-sha1 is refused (RFC 8301 §3.1).
func (k *Key) VerifyDigest(alg string, digest, sig []byte) error {
	if k.Revoked {
		return errors.New("key revoked (empty p=)")
	}
	switch alg {
	case RSASHA1:
		return errors.New("rsa-sha1 is not accepted (RFC 8301)")
	case RSASHA256, Ed25519SHA256:
	default:
		return fmt.Errorf("unknown algorithm %q", alg)
	}
	if !k.allowsHash("sha256") {
		return fmt.Errorf("key's h=%s does not allow sha256", strings.Join(k.Hashes, ":"))
	}
	switch pub := k.PublicKey.(type) {
	case *rsa.PublicKey:
		if alg != RSASHA256 {
			return fmt.Errorf("a=%s with an rsa key", alg)
		}
		if bits := pub.N.BitLen(); bits < MinRSABits || bits > MaxRSABits {
			return fmt.Errorf("rsa key of %d bits (RFC 8301: %d to %d)", bits, MinRSABits, MaxRSABits)
		}
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest, sig); err != nil {
			return fmt.Errorf("%w: %w", errMismatch, err)
		}
	case ed25519.PublicKey:
		if alg != Ed25519SHA256 {
			return fmt.Errorf("a=%s with an ed25519 key", alg)
		}
		// RFC 8463 §3: PureEdDSA over the SHA-256 header hash.
		if !ed25519.Verify(pub, digest, sig) {
			return errMismatch
		}
	default:
		return fmt.Errorf("unusable key %T", pub)
	}
	return nil
}

// Algorithm returns the a= value for signing with key: rsa-sha256 for an
// RSA key of MinRSABits or more (RFC 8301 §3.2), ed25519-sha256 for an
// Ed25519 key (RFC 8463).
func Algorithm(key crypto.Signer) (string, error) {
	switch pub := key.Public().(type) {
	case *rsa.PublicKey:
		if bits := pub.N.BitLen(); bits < MinRSABits || bits > MaxRSABits {
			return "", fmt.Errorf("rsa key of %d bits (RFC 8301: %d to %d)", bits, MinRSABits, MaxRSABits)
		}
		return RSASHA256, nil
	case ed25519.PublicKey:
		return Ed25519SHA256, nil
	}
	return "", fmt.Errorf("unsupported key type %T (rsa or ed25519)", key.Public())
}

// SignDigest signs a SHA-256 header hash with key, for Algorithm(key):
// RSASSA-PKCS1-v1_5 (RFC 6376 §3.3.2) or Ed25519 over the hash (RFC 8463
// §3).
func SignDigest(key crypto.Signer, digest []byte) ([]byte, error) {
	var opts crypto.SignerOpts = crypto.SHA256
	if _, ok := key.Public().(ed25519.PublicKey); ok {
		opts = crypto.Hash(0) // the digest is the message
	}
	sig, err := key.Sign(rand.Reader, digest, opts)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return sig, nil
}
