package userdb

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/blake2b"
	"golang.org/x/text/secure/precis"
)

// passwordHash verifies a password for PLAIN and LOGIN.
type passwordHash interface {
	verify(password string) bool
}

// Argon2id parameters of the hashes Hash makes: OWASP's minimum for argon2id
// (19 MiB, 2 passes, 1 lane), affordable on a Raspberry Pi under load.
const (
	argonMemory  = 19 * 1024
	argonTime    = 2
	argonThreads = 1
	argonKeyLen  = 32
	// Limits on the parameters of stored hashes, so that a database cannot
	// make a login exhaust memory or time.
	argonMaxMemory = 1 << 20 // KiB: 1 GiB
	argonMaxTime   = 64
)

// scramIterations is the PBKDF2 iteration count of the SCRAM secrets Hash
// makes: PostgreSQL's default, and the minimum RFC 7677 §4 asks for.
const scramIterations = 4096

func parsePassword(s string) (passwordHash, error) {
	switch {
	case strings.HasPrefix(s, "$argon2id$"):
		return parseArgon2id(s)
	case strings.HasPrefix(s, "$2a$"), strings.HasPrefix(s, "$2b$"), strings.HasPrefix(s, "$2y$"):
		if _, err := bcrypt.Cost([]byte(s)); err != nil {
			return nil, fmt.Errorf("bad bcrypt hash: %w", err)
		}
		return bcryptHash(s), nil
	case strings.HasPrefix(s, "$"):
		return nil, fmt.Errorf("unsupported password hash %q (want $argon2id$, bcrypt or a BLAKE2b-512 hex digest)", strings.SplitN(s, "$", 3)[1])
	}
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != blake2b.Size {
		return nil, errors.New("password is not a hash: want the hex BLAKE2b-512 digest of Elit v1 (128 hex digits), $argon2id$ or bcrypt")
	}
	return blake2bHash(b), nil
}

// blake2bHash is Elit v1's unsalted BLAKE2b-512 digest. Kept for existing
// databases; Hash makes argon2id.
type blake2bHash []byte

func (h blake2bHash) verify(pw string) bool {
	sum := blake2b.Sum512([]byte(pw))
	return subtle.ConstantTimeCompare(sum[:], h) == 1
}

type bcryptHash string

func (h bcryptHash) verify(pw string) bool {
	return bcrypt.CompareHashAndPassword([]byte(h), []byte(pw)) == nil
}

type argon2idHash struct {
	memory    uint32
	time      uint32
	threads   uint8
	salt, key []byte
}

// parseArgon2id parses the PHC string format:
// $argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash> (unpadded base64).
func parseArgon2id(s string) (*argon2idHash, error) {
	f := strings.Split(s, "$")
	if len(f) != 6 || f[2] != "v=19" {
		return nil, errors.New("bad argon2id hash: want $argon2id$v=19$m=M,t=T,p=P$salt$hash")
	}
	h := &argon2idHash{}
	var m, t, p uint64
	for _, kv := range strings.Split(f[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("bad argon2id parameter %q", kv)
		}
		switch k {
		case "m":
			m = n
		case "t":
			t = n
		case "p":
			p = n
		default:
			return nil, fmt.Errorf("bad argon2id parameter %q", kv)
		}
	}
	if m < 8*p || m > argonMaxMemory || t < 1 || t > argonMaxTime || p < 1 || p > 255 {
		return nil, fmt.Errorf("argon2id parameters out of range: m=%d (at most %d KiB), t=%d (1 to %d), p=%d (1 to 255)", m, argonMaxMemory, t, argonMaxTime, p)
	}
	var err error
	if h.salt, err = base64.RawStdEncoding.DecodeString(f[4]); err != nil || len(h.salt) < 8 {
		return nil, errors.New("bad argon2id salt: want at least 8 bytes of unpadded base64")
	}
	if h.key, err = base64.RawStdEncoding.DecodeString(f[5]); err != nil || len(h.key) < 16 {
		return nil, errors.New("bad argon2id hash: want at least 16 bytes of unpadded base64")
	}
	h.memory, h.time, h.threads = uint32(m), uint32(t), uint8(p)
	return h, nil
}

func (h *argon2idHash) verify(pw string) bool {
	key := argon2.IDKey([]byte(pw), h.salt, h.time, h.memory, h.threads, uint32(len(h.key)))
	return subtle.ConstantTimeCompare(key, h.key) == 1
}

func (h *argon2idHash) String() string {
	return fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", h.memory, h.time, h.threads,
		base64.RawStdEncoding.EncodeToString(h.salt), base64.RawStdEncoding.EncodeToString(h.key))
}

// dummyHash is verified when a login names no user, so that an unknown name
// takes as long as a wrong password.
var dummyHash = &argon2idHash{memory: argonMemory, time: argonTime, threads: argonThreads,
	salt: make([]byte, 16), key: make([]byte, argonKeyLen)}

// ScramSecret is what a SCRAM server needs to authenticate a user without
// knowing the password (RFC 5802 §3): the salt and iteration count for
// the client, StoredKey = H(ClientKey) and ServerKey.
type ScramSecret struct {
	Mechanism  string // "SCRAM-SHA-256" or "SCRAM-SHA-1"
	Iterations int
	Salt       []byte
	StoredKey  []byte
	ServerKey  []byte
}

// Hash returns the hash function of the mechanism.
func (s *ScramSecret) Hash() func() hash.Hash {
	if s.Mechanism == "SCRAM-SHA-1" {
		return sha1.New
	}
	return sha256.New
}

// String formats the secret as PostgreSQL does:
// SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, base64.
func (s *ScramSecret) String() string {
	b := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("%s$%d:%s$%s:%s", s.Mechanism, s.Iterations, b(s.Salt), b(s.StoredKey), b(s.ServerKey))
}

type errBadScram struct{ mech string }

func (e errBadScram) Error() string {
	return fmt.Sprintf("bad %s secret: want %s$<iterations>:<salt>$<StoredKey>:<ServerKey> (base64)", e.mech, e.mech)
}

func parseScram(mech, s string) (*ScramSecret, error) {
	rest, ok := strings.CutPrefix(s, mech+"$")
	bad := errBadScram{mech}
	if !ok {
		return nil, bad
	}
	params, keys, ok := strings.Cut(rest, "$")
	iter, salt, ok1 := strings.Cut(params, ":")
	stored, server, ok2 := strings.Cut(keys, ":")
	if !ok || !ok1 || !ok2 {
		return nil, bad
	}
	sec := &ScramSecret{Mechanism: mech}
	var err error
	if sec.Iterations, err = strconv.Atoi(iter); err != nil || sec.Iterations < 1 || sec.Iterations > 10_000_000 {
		return nil, fmt.Errorf("bad %s iteration count %q", mech, iter)
	}
	size := sec.Hash()().Size()
	d := base64.StdEncoding.DecodeString
	if sec.Salt, err = d(salt); err != nil || len(sec.Salt) == 0 {
		return nil, bad
	}
	if sec.StoredKey, err = d(stored); err != nil || len(sec.StoredKey) != size {
		return nil, bad
	}
	if sec.ServerKey, err = d(server); err != nil || len(sec.ServerKey) != size {
		return nil, bad
	}
	return sec, nil
}

// NewScramSecret derives a SCRAM secret from a password (RFC 5802 §3), after
// normalising the password as clients do (RFC 7677 §4 asks for SASLprep; we
// use its successor, the PRECIS OpaqueString profile of RFC 8265).
func NewScramSecret(mech, password string, salt []byte, iterations int) (*ScramSecret, error) {
	sec := &ScramSecret{Mechanism: mech, Iterations: iterations, Salt: salt}
	if mech != "SCRAM-SHA-256" && mech != "SCRAM-SHA-1" {
		return nil, fmt.Errorf("unknown SCRAM mechanism %q", mech)
	}
	if norm, err := precis.OpaqueString.String(password); err == nil {
		password = norm
	}
	h := sec.Hash()
	salted, err := pbkdf2.Key(h, password, salt, iterations, h().Size())
	if err != nil {
		return nil, err
	}
	clientKey := hmacSum(h, salted, "Client Key")
	stored := h()
	stored.Write(clientKey)
	sec.StoredKey = stored.Sum(nil)
	sec.ServerKey = hmacSum(h, salted, "Server Key")
	return sec, nil
}

func hmacSum(h func() hash.Hash, key []byte, msg string) []byte {
	m := hmac.New(h, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// cramSecret holds the HMAC-MD5 inner and outer MD5 states after the padded
// key block (RFC 2195, RFC 2104): enough to check CRAM-MD5 responses without
// the password, but equivalent to the password for CRAM-MD5 itself.
type cramSecret struct {
	inner, outer [4]uint32
}

const cramPrefix = "CRAM-MD5$"

func newCramSecret(password string) *cramSecret {
	key := []byte(password)
	if len(key) > md5.BlockSize {
		sum := md5.Sum(key)
		key = sum[:]
	}
	var ipad, opad [md5.BlockSize]byte
	copy(ipad[:], key)
	copy(opad[:], key)
	for i := range ipad {
		ipad[i] ^= 0x36
		opad[i] ^= 0x5c
	}
	return &cramSecret{inner: md5State(ipad[:]), outer: md5State(opad[:])}
}

// md5State runs MD5 over one block and returns its chaining state, read from
// the digest's binary marshaling ("md5\x01", then the state big-endian).
func md5State(block []byte) [4]uint32 {
	h := md5.New()
	h.Write(block)
	b, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil || len(b) < 20 || string(b[:4]) != "md5\x01" {
		panic("BUG: unexpected crypto/md5 marshaling")
	}
	var s [4]uint32
	for i := range s {
		s[i] = binary.BigEndian.Uint32(b[4+4*i:])
	}
	return s
}

// md5Resume returns an MD5 digest in the state s, as if one block had been written.
func md5Resume(s [4]uint32) hash.Hash {
	b := []byte("md5\x01")
	for _, v := range s {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	b = append(b, make([]byte, md5.BlockSize)...)
	b = binary.BigEndian.AppendUint64(b, md5.BlockSize)
	h := md5.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(b); err != nil {
		panic("BUG: unexpected crypto/md5 marshaling: " + err.Error())
	}
	return h
}

func (c *cramSecret) String() string {
	var b []byte
	for _, v := range append(c.inner[:], c.outer[:]...) {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	return cramPrefix + hex.EncodeToString(b)
}

func parseCram(s string) (*cramSecret, error) {
	b, err := hex.DecodeString(strings.TrimPrefix(s, cramPrefix))
	if !strings.HasPrefix(s, cramPrefix) || err != nil || len(b) != 32 {
		return nil, errors.New("bad CRAM-MD5 secret: want CRAM-MD5$ and 64 hex digits")
	}
	c := &cramSecret{}
	for i := range 4 {
		c.inner[i] = binary.BigEndian.Uint32(b[4*i:])
		c.outer[i] = binary.BigEndian.Uint32(b[16+4*i:])
	}
	return c, nil
}

// response computes the CRAM-MD5 response (hex HMAC-MD5) to a challenge.
func (c *cramSecret) response(challenge []byte) []byte {
	in := md5Resume(c.inner)
	in.Write(challenge)
	out := md5Resume(c.outer)
	out.Write(in.Sum(nil))
	return []byte(hex.EncodeToString(out.Sum(nil)))
}

// Secrets are the password fields of a new database entry, made by Hash.
type Secrets struct {
	Password    string `json:"password"`
	ScramSHA256 string `json:"scram-sha-256,omitempty"`
	ScramSHA1   string `json:"scram-sha-1,omitempty"`
	CramMD5     string `json:"cram-md5,omitempty"`
}

// Hash makes the secrets for a password: an argon2id hash (PLAIN, LOGIN),
// SCRAM-SHA-256 and SCRAM-SHA-1 secrets, and with cram a CRAM-MD5 secret
// (which, unlike the others, lets whoever reads it log in with CRAM-MD5).
func Hash(password string, cram bool) (Secrets, error) {
	salt := make([]byte, 16)
	rand.Read(salt)
	a := &argon2idHash{memory: argonMemory, time: argonTime, threads: argonThreads, salt: salt,
		key: argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)}
	s := Secrets{Password: a.String()}
	for _, mech := range []string{"SCRAM-SHA-256", "SCRAM-SHA-1"} {
		ssalt := make([]byte, 16)
		rand.Read(ssalt)
		sec, err := NewScramSecret(mech, password, ssalt, scramIterations)
		if err != nil {
			return Secrets{}, err
		}
		if mech == "SCRAM-SHA-256" {
			s.ScramSHA256 = sec.String()
		} else {
			s.ScramSHA1 = sec.String()
		}
	}
	if cram {
		s.CramMD5 = newCramSecret(password).String()
	}
	return s, nil
}
