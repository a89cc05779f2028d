//go:build tools

// Package arm64 lists what the arm64 appliance image (a UEFI arm64 PC or
// VM: QEMU's virt machine, a cloud arm64 VM) is built from, so that go mod
// tidy keeps them pinned in go.mod. (monogok gendep writes the same list
// with //go:build ignore, which go mod tidy skips.)
package arm64

import (
	_ "github.com/gokrazy/gokrazy"
	_ "github.com/gokrazy/gokrazy/cmd/dhcp"
	_ "github.com/gokrazy/gokrazy/cmd/randomd"
	_ "github.com/gokrazy/kernel.arm64"

	_ "elit.local/elit/cmd/elit"
)
