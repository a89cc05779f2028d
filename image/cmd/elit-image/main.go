// Command elit-image builds, boots, flashes and updates the Elit appliance.
//
//	elit-image build -target vm|rpi -db db.json|db.img -domain D [flags] -o elit.img
//	elit-image qemu [flags] elit.img
//	elit-image flash -o /dev/sdX [-y] elit.img
//	elit-image update -host H[:port] [-password P] elit.img
//	elit-image db push -host H[:port] [-password P] db.json|db.img
//
// The password of an image is kept next to it in IMAGE.password; update and
// db push read it from there when -password is not given.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var err error
	switch {
	case len(args) >= 1 && args[0] == "build":
		err = cmdBuild(ctx, args[1:], stdout, stderr)
	case len(args) >= 1 && args[0] == "qemu":
		err = cmdQEMU(ctx, args[1:], stdout, stderr)
	case len(args) >= 1 && args[0] == "flash":
		err = cmdFlash(ctx, args[1:], stdin, stdout, stderr)
	case len(args) >= 1 && args[0] == "update":
		err = cmdUpdate(ctx, args[1:], stdout, stderr)
	case len(args) >= 1 && args[0] == "relay": // for QEMU's guestfwd
		err = cmdRelay(args[1:], stdin, stdout)
	case len(args) >= 2 && args[0] == "db" && args[1] == "push":
		err = cmdDBPush(ctx, args[2:], stdout, stderr)
	case len(args) >= 1 && (args[0] == "-h" || args[0] == "help" || args[0] == "--help"):
		usage(stdout)
		return 0
	default:
		usage(stderr)
		return 2
	}
	if err != nil {
		if err != errUsage {
			fmt.Fprintf(stderr, "elit-image: %v\n", err)
		}
		return 1
	}
	return 0
}

// errUsage is a command-line error already reported by the flag package.
var errUsage = fmt.Errorf("usage")

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  elit-image build -target vm|rpi -db db.json|db.img -domain DOMAIN [-hostname H] [-size 2G] -o elit.img
        build a bootable image: gokrazy (monogok), /perm formatted, and the user
        database in partition 5 "oneffs"
  elit-image qemu [-target vm] elit.img
        boot an image in QEMU (UEFI, user networking restricted to the host,
        forwards on 127.0.0.1)
  elit-image flash -o /dev/sdX [-y] elit.img
        write an image to a disk and verify it
  elit-image update -host H[:port] [-password P] elit.img
        update a running appliance: trial boot of the new root, made permanent
        only when the new version answers
  elit-image db push -host H[:port] [-password P] db.json|db.img
        replace the user database of a running appliance without a reboot
`)
}
