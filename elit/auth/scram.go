package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"strconv"
	"strings"

	"elit.local/elit/userdb"
)

// scram is the server side of RFC 5802 §5: client-first, server-first,
// client-final, server-final, then the empty response RFC 4954 §4 expects
// after a final challenge.
type scram struct {
	mech string // SCRAM-SHA-1, SCRAM-SHA-256 or SCRAM-SHA-256-PLUS
	db   *userdb.DB
	cfg  *Config
	done func(*userdb.User)

	step        int
	gs2Header   string
	cbData      []byte
	login       string
	user        *userdb.User
	secret      *userdb.ScramSecret
	nonce       string
	clientFirst string // client-first-message-bare
	serverFirst string
	serverFinal string
}

func newScram(mech string, db *userdb.DB, cfg *Config, done func(*userdb.User)) *scram {
	return &scram{mech: mech, db: db, cfg: cfg, done: done}
}

func (s *scram) plus() bool { return strings.HasSuffix(s.mech, "-PLUS") }

func (s *scram) Next(response []byte) ([]byte, bool, error) {
	switch s.step {
	case 0:
		if response == nil {
			// No initial response: ask for the client-first message.
			s.step = 1
			return []byte{}, false, nil
		}
		return s.first(string(response))
	case 1:
		return s.first(string(response))
	case 2:
		return s.final(string(response))
	default:
		if len(response) != 0 {
			return nil, false, malformed("%s: want an empty response after server-final", s.mech)
		}
		s.done(s.user)
		return nil, true, nil
	}
}

// first handles client-first-message = gs2-header client-first-message-bare.
func (s *scram) first(msg string) ([]byte, bool, error) {
	s.step = 2
	cbind, rest, ok := strings.Cut(msg, ",")
	if !ok {
		return nil, false, malformed("%s: bad client-first message", s.mech)
	}
	authzid, bare, ok := strings.Cut(rest, ",")
	if !ok {
		return nil, false, malformed("%s: bad client-first message", s.mech)
	}
	s.gs2Header = cbind + "," + authzid + ","
	switch {
	case strings.HasPrefix(cbind, "p="):
		if !s.plus() {
			return nil, false, malformed("%s: channel binding requested with a non-PLUS mechanism", s.mech)
		}
		data, err := s.channelBinding(cbind[2:])
		if err != nil {
			return nil, false, err
		}
		s.cbData = data
	case cbind == "n", cbind == "y":
		if s.plus() {
			return nil, false, malformed("%s: the -PLUS mechanism needs channel binding", s.mech)
		}
		if cbind == "y" && s.cfg.PlusAdvertised && s.mech == "SCRAM-SHA-256" {
			// RFC 5802 §6: the client could bind and we offered it: someone
			// removed the -PLUS mechanism on the way.
			return nil, false, &Error{Reason: "channel binding downgrade detected"}
		}
	default:
		return nil, false, malformed("%s: bad gs2-cbind-flag", s.mech)
	}
	if authzid != "" && !strings.HasPrefix(authzid, "a=") {
		return nil, false, malformed("%s: bad authzid", s.mech)
	}
	s.clientFirst = bare
	attrs := strings.Split(bare, ",")
	if len(attrs) < 2 || !strings.HasPrefix(attrs[0], "n=") || !strings.HasPrefix(attrs[1], "r=") {
		// This also refuses a leading "m=": no extension is supported (§5.1).
		return nil, false, malformed("%s: want n=user,r=nonce", s.mech)
	}
	login, ok := decodeSaslname(attrs[0][2:])
	if !ok {
		return nil, false, malformed("%s: bad user name encoding", s.mech)
	}
	s.login = login
	if authzid != "" {
		az, ok := decodeSaslname(authzid[2:])
		if !ok || (az != login && s.db.Login(az) != s.db.Login(login)) {
			return nil, false, &Error{Login: login, Reason: "may not act as another user"}
		}
	}
	cnonce := attrs[1][2:]
	if cnonce == "" || strings.ContainsAny(cnonce, ",") {
		return nil, false, malformed("%s: bad nonce", s.mech)
	}
	s.nonce = cnonce + s.cfg.nonce()
	base := strings.TrimSuffix(s.mech, "-PLUS")
	if u := s.db.Login(login); u != nil {
		if sec, ok := u.Scram(base); ok {
			s.user, s.secret = u, sec
		}
	}
	salt, iter := s.fakeSalt(base), 4096
	if s.secret != nil {
		salt, iter = s.secret.Salt, s.secret.Iterations
	}
	s.serverFirst = "r=" + s.nonce + ",s=" + base64.StdEncoding.EncodeToString(salt) + ",i=" + strconv.Itoa(iter)
	return []byte(s.serverFirst), false, nil
}

// fakeSalt makes an unknown user look like a known one: the same salt for
// the same name every time (RFC 5802 §9 asks servers not to reveal which
// users exist).
func (s *scram) fakeSalt(base string) []byte {
	m := hmac.New(sha256.New, fakeKey[:])
	m.Write([]byte(base + "\x00" + s.login))
	return m.Sum(nil)[:16]
}

// final handles client-final-message = channel-binding "," nonce ["," ext] "," proof.
func (s *scram) final(msg string) ([]byte, bool, error) {
	s.step = 3
	withoutProof, proofAttr, ok := cutLast(msg, ",")
	if !ok || !strings.HasPrefix(proofAttr, "p=") {
		return nil, false, malformed("%s: bad client-final message", s.mech)
	}
	attrs := strings.Split(withoutProof, ",")
	if len(attrs) < 2 || !strings.HasPrefix(attrs[0], "c=") || !strings.HasPrefix(attrs[1], "r=") {
		return nil, false, malformed("%s: bad client-final message", s.mech)
	}
	cb, err := base64.StdEncoding.DecodeString(attrs[0][2:])
	if err != nil {
		return nil, false, malformed("%s: bad channel binding encoding", s.mech)
	}
	want := append([]byte(s.gs2Header), s.cbData...)
	if subtle.ConstantTimeCompare(cb, want) != 1 {
		return nil, false, &Error{Login: s.login, Reason: "channel binding mismatch"}
	}
	if attrs[1][2:] != s.nonce {
		return nil, false, malformed("%s: nonce mismatch", s.mech)
	}
	proof, err := base64.StdEncoding.DecodeString(proofAttr[2:])
	if err != nil {
		return nil, false, malformed("%s: bad proof encoding", s.mech)
	}
	if s.secret == nil {
		return nil, false, &Error{Login: s.login, Reason: "wrong login or password"}
	}
	h := s.secret.Hash()
	authMessage := s.clientFirst + "," + s.serverFirst + "," + withoutProof
	clientSignature := hmacBytes(h, s.secret.StoredKey, authMessage)
	if len(proof) != len(clientSignature) {
		return nil, false, &Error{Login: s.login, Reason: "wrong login or password"}
	}
	clientKey := make([]byte, len(proof))
	for i := range proof {
		clientKey[i] = proof[i] ^ clientSignature[i]
	}
	storedKey := h()
	storedKey.Write(clientKey)
	if subtle.ConstantTimeCompare(storedKey.Sum(nil), s.secret.StoredKey) != 1 {
		return nil, false, &Error{Login: s.login, Reason: "wrong login or password"}
	}
	serverSignature := hmacBytes(h, s.secret.ServerKey, authMessage)
	s.serverFinal = "v=" + base64.StdEncoding.EncodeToString(serverSignature)
	return []byte(s.serverFinal), false, nil
}

// decodeSaslname undoes RFC 5802 §5.1's escaping of ',' and '='.
func decodeSaslname(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ',':
			return "", false
		case '=':
			switch {
			case strings.HasPrefix(s[i:], "=2C"):
				b.WriteByte(',')
			case strings.HasPrefix(s[i:], "=3D"):
				b.WriteByte('=')
			default:
				return "", false
			}
			i += 2
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String(), b.Len() > 0
}

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}
