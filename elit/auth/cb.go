package auth

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"hash"
	"strconv"

	_ "crypto/sha512" // SHA-384 and SHA-512 for tls-server-end-point
)

// fakeKey keys the salts made up for unknown users; it changes at every
// start, which only tells an observer that the server restarted.
var fakeKey = func() (k [32]byte) {
	rand.Read(k[:])
	return k
}()

// channelBinding returns the channel binding data of type name for the
// connection.
func (s *scram) channelBinding(name string) ([]byte, error) {
	cs := s.cfg.TLS
	if cs == nil {
		return nil, malformed("%s: channel binding without TLS", s.mech)
	}
	switch name {
	case "tls-exporter":
		// RFC 9266 §2; with TLS 1.2 only safe (and only allowed by Go)
		// with the extended master secret.
		data, err := cs.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
		if err != nil {
			return nil, &Error{Reason: "tls-exporter channel binding unavailable on this connection: " + err.Error()}
		}
		return data, nil
	case "tls-unique":
		// RFC 5929 §3; not defined for TLS 1.3.
		if cs.Version >= tls.VersionTLS13 || len(cs.TLSUnique) == 0 {
			return nil, &Error{Reason: "tls-unique channel binding is not defined for TLS 1.3"}
		}
		return cs.TLSUnique, nil
	case "tls-server-end-point":
		// RFC 5929 §4.1: the hash of our certificate, with the hash of its
		// signature algorithm, SHA-256 in place of MD5 and SHA-1.
		if len(s.cfg.CertDER) == 0 {
			return nil, &Error{Reason: "tls-server-end-point channel binding unavailable"}
		}
		h := crypto.SHA256
		if cert, err := x509.ParseCertificate(s.cfg.CertDER); err == nil {
			switch cert.SignatureAlgorithm {
			case x509.SHA384WithRSA, x509.ECDSAWithSHA384, x509.SHA384WithRSAPSS:
				h = crypto.SHA384
			case x509.SHA512WithRSA, x509.ECDSAWithSHA512, x509.SHA512WithRSAPSS:
				h = crypto.SHA512
			}
		}
		d := h.New()
		d.Write(s.cfg.CertDER)
		return d.Sum(nil), nil
	}
	return nil, &Error{Reason: "unsupported channel binding type " + strconv.Quote(name)}
}

func hmacBytes(h func() hash.Hash, key []byte, msg string) []byte {
	m := hmac.New(h, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}
