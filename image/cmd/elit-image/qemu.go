package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// machine is how QEMU boots a target: the emulator, its machine and CPU,
// and the UEFI firmware (code and a variable store to copy).
type machine struct {
	qemu, pkg                      string // the binary and its Debian package
	args                           []string
	code, vars, firmwarePkg, label string
}

var machines = map[string]machine{
	// OVMF as Debian's ovmf package installs it.
	"vm": {qemu: "qemu-system-x86_64", pkg: "qemu-system-x86", args: []string{"-machine", "q35"},
		code: "/usr/share/OVMF/OVMF_CODE_4M.fd", vars: "/usr/share/OVMF/OVMF_VARS_4M.fd", firmwarePkg: "ovmf", label: "amd64"},
	// AAVMF as Debian's qemu-efi-aarch64 installs it; gokrazy's generic
	// arm64 kernel on QEMU's virt machine. -cpu max is the fastest CPU
	// under TCG.
	"arm64": {qemu: "qemu-system-aarch64", pkg: "qemu-system-arm", args: []string{"-machine", "virt", "-cpu", "max"},
		code: "/usr/share/AAVMF/AAVMF_CODE.fd", vars: "/usr/share/AAVMF/AAVMF_VARS.fd", firmwarePkg: "qemu-efi-aarch64", label: "arm64"},
}

// sinkAddr is where the VM reaches the host-side sink: mail the appliance
// relays to 10.0.2.100:25 comes out at -sink on the host (QEMU guestfwd).
const sinkAddr = "10.0.2.100:25"

type qemuOptions struct {
	image, target, sink, serial, accel string
	fresh                              bool // -i: a new disk from the image
	mem, smp                           int
	smtp, submission, submissions      int
	http, https, status                int
}

func (o *qemuOptions) args() ([]string, error) {
	m, ok := machines[o.target]
	if !ok {
		return nil, fmt.Errorf("-target %q: QEMU boots the vm and arm64 targets (it cannot run the Raspberry Pi firmware; test Pi images on a Pi, or the arm64 target here)", o.target)
	}
	fwd := []string{"user", "id=n0", "restrict=on"}
	for _, p := range []struct{ host, guest int }{{o.smtp, 25}, {o.submission, 587}, {o.submissions, 465},
		{o.http, plainHTTPPort}, {o.https, updatePort}, {o.status, statusPort}} {
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
	if err := copyFile(m.vars, vars); err != nil {
		return nil, fmt.Errorf("UEFI firmware (Debian package %s): %w", m.firmwarePkg, err)
	}
	return append(append([]string{m.qemu}, m.args...),
		"-accel", o.accel, "-smp", strconv.Itoa(o.smp), "-m", strconv.Itoa(o.mem),
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+m.code,
		"-drive", "if=pflash,format=raw,unit=1,file="+vars,
		"-drive", "file="+o.image+",format=raw,if=virtio",
		"-netdev", strings.Join(fwd, ","), "-device", "virtio-net-pci,netdev=n0",
		// gokrazy pets the watchdog; a hung system resets.
		"-device", "i6300esb", "-action", "watchdog=reset",
		"-display", "none", "-monitor", "none", "-serial", "file:"+o.serial,
	), nil
}

func cmdQEMU(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := qemuOptions{}
	fs := flag.NewFlagSet("elit-image qemu", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("i", "", "boot instance `name`'s appliance (its disk, "+diskFile+", a copy of its image made at the first boot), forwarding its ports when its host is 127.0.0.1")
	fs.BoolVar(&o.fresh, "fresh", false, "with -i: a new disk, copied from the instance's last image (what is on the old one is lost)")
	fs.StringVar(&o.target, "target", "vm", "image `target`: vm or arm64 (QEMU cannot boot rpi)")
	fs.StringVar(&o.sink, "sink", "127.0.0.1:2526", "host `address` that receives the mail the VM relays to "+sinkAddr+" (\"\" for none)")
	fs.StringVar(&o.serial, "serial", "", "serial console log `file` (default IMAGE.serial.log)")
	fs.StringVar(&o.accel, "accel", "tcg", "QEMU `accelerator`: tcg (software, works everywhere) or kvm")
	fs.IntVar(&o.mem, "m", 1024, "memory in `MiB`")
	fs.IntVar(&o.smp, "smp", 2, "virtual `CPUs`")
	fs.IntVar(&o.smtp, "smtp", 2525, "host `port` on 127.0.0.1 forwarded to the MX port 25 (0: none)")
	fs.IntVar(&o.submission, "submission", 5870, "host `port` forwarded to submission, 587")
	fs.IntVar(&o.submissions, "submissions", 4650, "host `port` forwarded to submissions, 465")
	fs.IntVar(&o.http, "http", 8080, "host `port` forwarded to gokrazy's port 80 (a redirect to HTTPS)")
	fs.IntVar(&o.https, "https", 8443, "host `port` forwarded to gokrazy's web interface and update API, HTTPS 8443")
	fs.IntVar(&o.status, "status", 8025, "host `port` forwarded to elit's status page and database push, HTTPS 8025")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	switch {
	case fs.NArg() == 1:
		o.image = fs.Arg(0)
	case fs.NArg() == 0 && *name != "":
		if err := o.fromInstance(*name, setFlags(fs)); err != nil {
			return err
		}
	default:
		fmt.Fprintln(stderr, "usage: elit-image qemu -i NAME | [flags] elit.img")
		return errUsage
	}
	if o.serial == "" {
		o.serial = o.image + ".serial.log"
	}
	argv, err := o.args()
	if err != nil {
		return err
	}
	bin, err := exec.LookPath(argv[0])
	if err != nil {
		return fmt.Errorf("%w (install the Debian package %s)", err, machines[o.target].pkg)
	}
	fmt.Fprintf(stdout, "booting %s (%s) in QEMU (software emulation: about 30 s); on 127.0.0.1:\n", o.image, machines[o.target].label)
	fmt.Fprintf(stdout, "  MX %d, submission %d (STARTTLS), submissions %d (TLS)\n", o.smtp, o.submission, o.submissions)
	fmt.Fprintf(stdout, "  gokrazy      https://127.0.0.1:%d/ (user gokrazy, the password of the image or instance)\n", o.https)
	fmt.Fprintf(stdout, "  elit status  https://127.0.0.1:%d/\n", o.status)
	fmt.Fprintf(stdout, "  relayed mail comes out at %s; serial console in %s\n", o.sink, o.serial)
	// QEMU takes this process's place, so that a signal to it (a power cut
	// in the tests) reaches QEMU itself.
	err = syscall.Exec(bin, argv, os.Environ())
	return fmt.Errorf("exec %s: %w", bin, err)
}

// fromInstance boots the image of instance name: its target, and its
// ports when the instance's appliance is this QEMU (host 127.0.0.1).
// diskFile is the disk of an instance's appliance in QEMU.
const diskFile = "qemu-disk.img"

func (o *qemuOptions) fromInstance(name string, set map[string]bool) error {
	in, err := loadInstance(name)
	if err != nil {
		return err
	}
	if set["target"] {
		return fmt.Errorf("-target: with -i, the instance's %s decides", instanceFile)
	}
	o.target = in.Target
	// The appliance's disk is a copy of the image, as flashing makes
	// one, kept across boots: an update writes it, a build does not.
	o.image = in.file(diskFile)
	if _, err := os.Stat(o.image); errors.Is(err, fs.ErrNotExist) || o.fresh {
		if err := sparseCopy(in.file(imageFile), o.image); err != nil {
			return fmt.Errorf("the instance's disk (flash it with elit-image build -i %s first?): %w", name, err)
		}
	} else if err != nil {
		return err
	}
	if in.Host != "127.0.0.1" && in.Host != "localhost" {
		return nil
	}
	for _, p := range []struct {
		flag string
		port int
		dst  *int
	}{{"https", in.UpdatePort, &o.https}, {"status", in.StatusPort, &o.status}, {"smtp", in.SMTPPort, &o.smtp}} {
		if p.port != 0 && !set[p.flag] {
			*p.dst = p.port
		}
	}
	return nil
}

// sparseCopy copies the image from to the file to, leaving holes where
// from has zeros (a 2 GiB image is mostly empty).
func sparseCopy(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to+".tmp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer os.Remove(to + ".tmp")
	buf := make([]byte, 1<<20)
	var off int64
	for {
		n, err := io.ReadFull(in, buf)
		if n > 0 {
			if !allZero(buf[:n]) {
				if _, err := out.WriteAt(buf[:n], off); err != nil {
					out.Close()
					return err
				}
			}
			off += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			out.Close()
			return err
		}
	}
	if err := out.Truncate(off); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(to+".tmp", to)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
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
