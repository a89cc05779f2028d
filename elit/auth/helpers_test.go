package auth

import "crypto/md5"

var md5New = md5.New
