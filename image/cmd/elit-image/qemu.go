package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// OVMF (UEFI firmware) as Debian's ovmf package installs it.
const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// sinkAddr is where the VM reaches the host-side sink: mail the appliance
// relays to 10.0.2.100:25 comes out at -sink on the host (QEMU guestfwd).
const sinkAddr = "10.0.2.100:25"

type qemuOptions struct {
	image, target, sink, serial, accel string
	mem, smp                           int
	smtp, submission, submissions      int
	http, status                       int
}

func (o *qemuOptions) args() ([]string, error) {
	if o.target != "vm" {
		return nil, fmt.Errorf("-target %q: QEMU boots the vm target only (it cannot run the Raspberry Pi firmware; test Pi images on a Pi)", o.target)
	}
	fwd := []string{"user", "id=n0", "restrict=on"}
	for _, p := range []struct{ host, guest int }{{o.smtp, 25}, {o.submission, 587}, {o.submissions, 465}, {o.http, 80}, {o.status, 8025}} {
		if p.host > 0 {
			fwd = append(fwd, fmt.Sprintf("hostfwd=tcp:127.0.0.1:%d-:%d", p.host, p.guest))
		}
	}
	if o.sink != "" {
		h, p, ok := strings.Cut(o.sink, ":")
		if !ok || (h != "127.0.0.1" && h != "localhost") {
			return nil, fmt.Errorf("-sink %q: want 127.0.0.1:PORT (the VM may only reach loopback)", o.sink)
		}
		if _, err := strconv.Atoi(p); err != nil {
			return nil, fmt.Errorf("-sink %q: bad port", o.sink)
		}
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		// cmd: runs once per guest connection (a tcp: chardev would be
		// one connection, made when QEMU starts).
		fwd = append(fwd, fmt.Sprintf("guestfwd=tcp:%s-cmd:%s relay 127.0.0.1:%s", sinkAddr, self, p))
	}
	vars := o.image + ".vars.fd"
	// A fresh UEFI variable store each boot: a stale one after a change of
	// disk layout drops into the EFI shell (docs/gokrazy notes).
	if err := copyFile(ovmfVars, vars); err != nil {
		return nil, fmt.Errorf("OVMF (Debian package ovmf): %w", err)
	}
	return []string{
		"qemu-system-x86_64", "-machine", "q35", "-accel", o.accel, "-smp", strconv.Itoa(o.smp), "-m", strconv.Itoa(o.mem),
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + ovmfCode,
		"-drive", "if=pflash,format=raw,unit=1,file=" + vars,
		"-drive", "file=" + o.image + ",format=raw,if=virtio",
		"-netdev", strings.Join(fwd, ","), "-device", "virtio-net-pci,netdev=n0",
		// gokrazy pets the watchdog; a hung system resets.
		"-device", "i6300esb", "-action", "watchdog=reset",
		"-display", "none", "-monitor", "none", "-serial", "file:" + o.serial,
	}, nil
}

func cmdQEMU(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := qemuOptions{}
	fs := flag.NewFlagSet("elit-image qemu", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.target, "target", "vm", "image `target` (only vm boots in QEMU)")
	fs.StringVar(&o.sink, "sink", "127.0.0.1:2526", "host `address` that receives the mail the VM relays to "+sinkAddr+" (\"\" for none)")
	fs.StringVar(&o.serial, "serial", "", "serial console log `file` (default IMAGE.serial.log)")
	fs.StringVar(&o.accel, "accel", "tcg", "QEMU `accelerator`: tcg (software, works everywhere) or kvm")
	fs.IntVar(&o.mem, "m", 1024, "memory in `MiB`")
	fs.IntVar(&o.smp, "smp", 2, "virtual `CPUs`")
	fs.IntVar(&o.smtp, "smtp", 2525, "host `port` on 127.0.0.1 forwarded to the MX port 25 (0: none)")
	fs.IntVar(&o.submission, "submission", 5870, "host `port` forwarded to submission, 587")
	fs.IntVar(&o.submissions, "submissions", 4650, "host `port` forwarded to submissions, 465")
	fs.IntVar(&o.http, "http", 8080, "host `port` forwarded to gokrazy's web interface and update API, 80")
	fs.IntVar(&o.status, "status", 8025, "host `port` forwarded to elit's status page and database push, 8025")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: elit-image qemu [flags] elit.img")
		return errUsage
	}
	o.image = fs.Arg(0)
	if o.serial == "" {
		o.serial = o.image + ".serial.log"
	}
	argv, err := o.args()
	if err != nil {
		return err
	}
	bin, err := exec.LookPath(argv[0])
	if err != nil {
		return fmt.Errorf("%w (install the Debian package qemu-system-x86)", err)
	}
	pw, _ := os.ReadFile(o.image + ".password")
	password := strings.TrimSpace(string(pw))
	fmt.Fprintf(stdout, "booting %s in QEMU (software emulation: about 30 s); on 127.0.0.1:\n", o.image)
	fmt.Fprintf(stdout, "  MX %d, submission %d (STARTTLS), submissions %d (TLS)\n", o.smtp, o.submission, o.submissions)
	fmt.Fprintf(stdout, "  gokrazy      http://gokrazy:%s@127.0.0.1:%d/\n", password, o.http)
	fmt.Fprintf(stdout, "  elit status  http://gokrazy:%s@127.0.0.1:%d/\n", password, o.status)
	fmt.Fprintf(stdout, "  relayed mail comes out at %s; serial console in %s\n", o.sink, o.serial)
	// QEMU takes this process's place, so that a signal to it (a power cut
	// in the tests) reaches QEMU itself.
	err = syscall.Exec(bin, argv, os.Environ())
	return fmt.Errorf("exec %s: %w", bin, err)
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// cmdRelay copies between standard input and output and a TCP connection
// to addr: QEMU runs it for each connection the VM opens to the sink.
func cmdRelay(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) != 1 {
		return errUsage
	}
	c, err := net.DialTimeout("tcp", args[0], 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	done := make(chan struct{})
	go func() {
		io.Copy(stdout, c)
		close(done)
	}()
	io.Copy(c, stdin)
	c.(*net.TCPConn).CloseWrite()
	<-done
	return nil
}
