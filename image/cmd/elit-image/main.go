// Command elit-image builds, boots, flashes and updates the Elit appliance.
//
//	elit-image new -i NAME -domain D [-target vm|arm64|rpi] [-db users.json] [-host H] [flags]
//	elit-image build -i NAME
//	elit-image qemu -i NAME
//	elit-image flash -i NAME -o /dev/sdX [-y]
//	elit-image update -i NAME [elit.img]
//	elit-image db push -i NAME [db.json|db.img]
//	elit-image pin -i NAME
//
// An instance (a directory, ~/elit/NAME) keeps everything the commands
// need: settings, password, TLS key. Without one, build takes its settings
// as flags and keeps the password, certificate and key next to the image
// (IMAGE.password, IMAGE.tls.pem, IMAGE.tls.key), where update and db
// push find them.
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
	case len(args) >= 1 && args[0] == "new":
		err = cmdNew(args[1:], stdout, stderr)
	case len(args) >= 1 && args[0] == "pin":
		err = cmdPin(ctx, args[1:], stdin, stdout, stderr)
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
  elit-image new -i NAME -domain DOMAIN [-target vm|arm64|rpi] [-hostname H] [-db users.json] [-host H] [-elit-flag=...]
        make an instance (~/elit/NAME, or $ELIT_INSTANCES/NAME): its settings,
        password and TLS key, which every command below takes with -i NAME
  elit-image build -i NAME [-o elit.img] | -target vm|arm64|rpi -db db.json|db.img -domain DOMAIN [flags] -o elit.img
        build a bootable image: gokrazy (monogok), /perm formatted, and the user
        database in partition 5 "oneffs"; prints its SHA-256 and whether it
        is reproducible
  elit-image qemu -i NAME | [-target vm|arm64] elit.img
        boot an image in QEMU (UEFI, user networking restricted to the host,
        forwards on 127.0.0.1)
  elit-image flash [-i NAME] -o /dev/sdX [-y] [elit.img]
        write an image to a disk and verify it
  elit-image update -i NAME [elit.img] | -host H[:port] elit.img
        update a running appliance over TLS (its key pinned): trial boot of the
        new root, made permanent without a second reboot once it answers
  elit-image db push -i NAME [db.json] | -host H[:port] -password-file F -cert F db.json|db.img
        replace the user database of a running appliance without a reboot
  elit-image pin -i NAME | -host H[:port]
        show the TLS key a running appliance presents and pin it
`)
}
