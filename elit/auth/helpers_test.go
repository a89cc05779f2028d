package auth

import (
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/sha1"
	"hash"
)

var (
	md5New  = md5.New
	sha1New = sha1.New
)

func deriveClientKey(h func() hash.Hash, password string, salt []byte, iter int) []byte {
	salted, err := pbkdf2.Key(h, password, salt, iter, h().Size())
	if err != nil {
		panic(err)
	}
	return hmacBytes(h, salted, "Client Key")
}
