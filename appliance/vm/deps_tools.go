//go:build tools

// Package vm lists what the vm appliance image is built from, so that go mod
// tidy keeps them pinned in go.mod. (monogok gendep writes the same list with
// //go:build ignore, which go mod tidy skips.)
package vm

import (
	_ "github.com/gokrazy/gokrazy"
	_ "github.com/gokrazy/gokrazy/cmd/dhcp"
	_ "github.com/gokrazy/gokrazy/cmd/randomd"
	_ "github.com/gokrazy/kernel.amd64"

	_ "elit.local/elit/cmd/elit"
)
