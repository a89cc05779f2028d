package auth

import (
	"crypto/md5"
	"crypto/sha1"
)

var (
	md5New  = md5.New
	sha1New = sha1.New
)
