//go:build tools

// Package rpi lists what the rpi appliance image is built from, so that go mod
// tidy keeps them pinned in go.mod. (monogok gendep writes the same list with
// //go:build ignore, which go mod tidy skips.)
package rpi

import (
	_ "github.com/gokrazy/firmware"
	_ "github.com/gokrazy/gokrazy"
	_ "github.com/gokrazy/gokrazy/cmd/dhcp"
	_ "github.com/gokrazy/gokrazy/cmd/ntp"
	_ "github.com/gokrazy/gokrazy/cmd/randomd"
	_ "github.com/gokrazy/kernel.rpi"
	_ "github.com/gokrazy/rpi-eeprom"

	_ "elit.local/elit/cmd/elit"
)
