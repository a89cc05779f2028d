package smtpclient

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

// The SASL clients, for AUTH to a submission relay (RFC 4954).

// Mechanisms are the mechanisms NewSASL knows, strongest first: the order
// in which Login picks among those a server offers.
var Mechanisms = []string{"SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN"}

// NewSASL returns the client side of mechanism for user and password.
func NewSASL(mechanism, user, password string) (sasl.Client, error) {
	switch m := strings.ToUpper(mechanism); m {
	case "PLAIN":
		return sasl.NewPlainClient("", user, password), nil
	case "LOGIN":
		return &loginClient{user: user, password: password}, nil
	case "CRAM-MD5":
		return &cramClient{user: user, password: password}, nil
	case "SCRAM-SHA-256", "SCRAM-SHA-1":
		return &SCRAM{Mechanism: m, User: user, Password: password}, nil
	}
	return nil, fmt.Errorf("unknown SASL mechanism %q", mechanism)
}

// NewChannelBindingClient returns a SCRAM-SHA-256-PLUS client bound to a
// TLS channel: cbType is "tls-exporter", "tls-server-end-point" or
// "tls-unique", cbData that channel's binding data (RFC 5929, RFC 9266).
func NewChannelBindingClient(user, password, cbType string, cbData []byte) sasl.Client {
	return &SCRAM{Mechanism: "SCRAM-SHA-256-PLUS", User: user, Password: password,
		GS2: "p=" + cbType + ",,", ChannelBinding: cbData}
}

// loginClient answers "Username:" and "Password:" in turn (the LOGIN
// mechanism of draft-murchison-sasl-login).
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

// SCRAM is the client side of SCRAM (RFC 5802, RFC 7677): SCRAM-SHA-256,
// SCRAM-SHA-1, or SCRAM-SHA-256-PLUS bound to the TLS channel. Use it
// once.
type SCRAM struct {
	Mechanism      string
	User, Password string
	// GS2 is the gs2 header (RFC 5802 §7): "n,," without channel binding
	// (the default), "y,," for a client that could bind but thinks the
	// server cannot, "p=TYPE,," bound to ChannelBinding, the channel's
	// binding data of TYPE (RFC 5929, RFC 9266).
	GS2            string
	ChannelBinding []byte

	step      int
	bare      string // client-first-message-bare
	serverSig []byte
}

func (c *SCRAM) hash() func() hash.Hash {
	if strings.HasPrefix(c.Mechanism, "SCRAM-SHA-1") {
		return sha1.New
	}
	return sha256.New
}

// Start implements sasl.Client: the client-first message.
func (c *SCRAM) Start() (string, []byte, error) {
	switch c.Mechanism {
	case "SCRAM-SHA-256", "SCRAM-SHA-1", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS":
	default:
		return "", nil, fmt.Errorf("unknown SASL mechanism %q", c.Mechanism)
	}
	nonce := make([]byte, 18)
	rand.Read(nonce)
	name := strings.NewReplacer("=", "=3D", ",", "=2C").Replace(c.User)
	c.bare = "n=" + name + ",r=" + base64.RawStdEncoding.EncodeToString(nonce)
	if c.GS2 == "" {
		c.GS2 = "n,,"
	}
	return c.Mechanism, []byte(c.GS2 + c.bare), nil
}

// Next implements sasl.Client: the client-final message, then the check
// of the server's signature (the server knows the password too).
func (c *SCRAM) Next(challenge []byte) ([]byte, error) {
	h := c.hash()
	mac := func(key []byte, msg string) []byte {
		m := hmac.New(h, key)
		m.Write([]byte(msg))
		return m.Sum(nil)
	}
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
			return nil, fmt.Errorf("%s: bad server-first message", c.Mechanism)
		}
		pw := c.Password
		if norm, err := precis.OpaqueString.String(pw); err == nil {
			pw = norm
		}
		salted, err := pbkdf2.Key(h, pw, salt, iter, h().Size())
		if err != nil {
			return nil, err
		}
		without := "c=" + base64.StdEncoding.EncodeToString(append([]byte(c.GS2), c.ChannelBinding...)) + ",r=" + nonce
		authMessage := c.bare + "," + string(challenge) + "," + without
		clientKey := mac(salted, "Client Key")
		stored := h()
		stored.Write(clientKey)
		sig := mac(stored.Sum(nil), authMessage)
		proof := make([]byte, len(sig))
		for i := range sig {
			proof[i] = clientKey[i] ^ sig[i]
		}
		c.serverSig = mac(mac(salted, "Server Key"), authMessage)
		return []byte(without + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
	case 2:
		got, ok := strings.CutPrefix(string(challenge), "v=")
		sig, err := base64.StdEncoding.DecodeString(got)
		if !ok || err != nil || subtle.ConstantTimeCompare(sig, c.serverSig) != 1 {
			return nil, fmt.Errorf("%s: the server's signature is wrong: it does not know the password", c.Mechanism)
		}
		return []byte{}, nil
	}
	return nil, fmt.Errorf("%s: unexpected challenge", c.Mechanism)
}
