package auth

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"github.com/emersion/go-sasl"
	"golang.org/x/text/secure/precis"
)

// ClientMechanisms are the mechanisms NewClient knows, strongest first: the
// order in which a relay transport picks among those a server offers.
var ClientMechanisms = []string{"SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN"}

// NewClient returns the client side of mechanism for user and password.
func NewClient(mechanism, user, password string) (sasl.Client, error) {
	switch strings.ToUpper(mechanism) {
	case "PLAIN":
		return sasl.NewPlainClient("", user, password), nil
	case "LOGIN":
		return &loginClient{user: user, password: password}, nil
	case "CRAM-MD5":
		return &cramClient{user: user, password: password}, nil
	case "SCRAM-SHA-256":
		return &scramSASL{mech: "SCRAM-SHA-256", h: sha256.New, user: user, password: password}, nil
	case "SCRAM-SHA-1":
		return &scramSASL{mech: "SCRAM-SHA-1", h: sha1.New, user: user, password: password}, nil
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownMechanism, mechanism)
}

// loginClient answers "Username:" and "Password:" in turn.
type loginClient struct {
	user, password string
	step           int
}

func (c *loginClient) Start() (string, []byte, error) { return "LOGIN", nil, nil }

func (c *loginClient) Next(challenge []byte) ([]byte, error) {
	c.step++
	switch c.step {
	case 1:
		return []byte(c.user), nil
	case 2:
		return []byte(c.password), nil
	}
	return nil, errors.New("LOGIN: unexpected challenge")
}

// cramClient is RFC 2195.
type cramClient struct{ user, password string }

func (c *cramClient) Start() (string, []byte, error) { return "CRAM-MD5", nil, nil }

func (c *cramClient) Next(challenge []byte) ([]byte, error) {
	m := hmac.New(md5.New, []byte(c.password))
	m.Write(challenge)
	return []byte(c.user + " " + hex.EncodeToString(m.Sum(nil))), nil
}

// scramSASL is the client side of RFC 5802. Without channel binding its
// gs2 header is "n,," (a relay's TLS is checked on its own).
type scramSASL struct {
	mech           string
	h              func() hash.Hash
	user, password string
	gs2            string // "" means "n,,"
	cbData         []byte // channel binding data, with a "p=" gs2 header
	step           int
	bare           string
	serverSig      []byte
}

// NewChannelBindingClient returns a SCRAM-SHA-256-PLUS client bound to a
// TLS channel: cbType is "tls-exporter", "tls-server-end-point" or
// "tls-unique", cbData that channel's binding data (RFC 5929, RFC 9266).
func NewChannelBindingClient(user, password, cbType string, cbData []byte) sasl.Client {
	return &scramSASL{mech: "SCRAM-SHA-256-PLUS", h: sha256.New, user: user, password: password,
		gs2: "p=" + cbType + ",,", cbData: cbData}
}

func (c *scramSASL) Start() (string, []byte, error) {
	nonce := make([]byte, 18)
	rand.Read(nonce)
	name := strings.NewReplacer("=", "=3D", ",", "=2C").Replace(c.user)
	c.bare = "n=" + name + ",r=" + base64.RawStdEncoding.EncodeToString(nonce)
	if c.gs2 == "" {
		c.gs2 = "n,,"
	}
	return c.mech, []byte(c.gs2 + c.bare), nil
}

func (c *scramSASL) Next(challenge []byte) ([]byte, error) {
	c.step++
	switch c.step {
	case 1:
		var nonce, salt64 string
		iter := 0
		for _, a := range strings.Split(string(challenge), ",") {
			switch {
			case strings.HasPrefix(a, "r="):
				nonce = a[2:]
			case strings.HasPrefix(a, "s="):
				salt64 = a[2:]
			case strings.HasPrefix(a, "i="):
				iter, _ = strconv.Atoi(a[2:])
			}
		}
		myNonce := c.bare[strings.Index(c.bare, ",r=")+3:]
		salt, err := base64.StdEncoding.DecodeString(salt64)
		if !strings.HasPrefix(nonce, myNonce) || err != nil || iter < 1 || iter > 1_000_000 {
			return nil, fmt.Errorf("%s: bad server-first message", c.mech)
		}
		pw := c.password
		if norm, err := precis.OpaqueString.String(pw); err == nil {
			pw = norm
		}
		salted, err := pbkdf2.Key(c.h, pw, salt, iter, c.h().Size())
		if err != nil {
			return nil, err
		}
		without := "c=" + base64.StdEncoding.EncodeToString(append([]byte(c.gs2), c.cbData...)) + ",r=" + nonce
		authMessage := c.bare + "," + string(challenge) + "," + without
		clientKey := hmacBytes(c.h, salted, "Client Key")
		stored := c.h()
		stored.Write(clientKey)
		sig := hmacBytes(c.h, stored.Sum(nil), authMessage)
		proof := make([]byte, len(sig))
		for i := range sig {
			proof[i] = clientKey[i] ^ sig[i]
		}
		c.serverSig = hmacBytes(c.h, hmacBytes(c.h, salted, "Server Key"), authMessage)
		return []byte(without + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
	case 2:
		got, ok := strings.CutPrefix(string(challenge), "v=")
		sig, err := base64.StdEncoding.DecodeString(got)
		if !ok || err != nil || subtle.ConstantTimeCompare(sig, c.serverSig) != 1 {
			return nil, fmt.Errorf("%s: the server's signature is wrong: it does not know the password", c.mech)
		}
		return []byte{}, nil
	}
	return nil, fmt.Errorf("%s: unexpected challenge", c.mech)
}
