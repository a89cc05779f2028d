package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"elit.local/image/gpt"
)

// updateOptions is what elit-image update is told.
type updateOptions struct {
	deviceFlags
	ep             endpoints
	image, version string
	timeout        time.Duration
}

func cmdUpdate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o updateOptions
	fs := flag.NewFlagSet("elit-image update", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.register(fs, "8443, or 80 with -insecure-http")
	fs.StringVar(&o.ep.status, "status", "", "elit's status page, `host:port` (default: the -host host, port 8025)")
	fs.StringVar(&o.ep.smtp, "smtp", "", "the SMTP server to check, `host:port` (default: the -host host, port 25)")
	fs.StringVar(&o.version, "version", "", "the `version` the image holds (default: from IMAGE.version, written by build)")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "how long to wait for a reboot")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	switch {
	case fs.NArg() == 1:
		o.image = fs.Arg(0)
	case fs.NArg() == 0 && o.instance != "":
		// As gok update: build the instance's image, then install it.
		b := buildOptions{size: 2 << 30, dbSize: 16 << 20}
		if err := b.fromInstance(o.instance, nil); err != nil {
			return err
		}
		if err := buildAndSay(ctx, &b, stdout, stderr); err != nil {
			return err
		}
		o.image = b.out
	default:
		fmt.Fprintln(stderr, "usage: elit-image update -i NAME [elit.img] | -host H[:port] [-password P] elit.img")
		return errUsage
	}
	dev, err := o.resolve(fs, o.image, &o.ep)
	if err != nil {
		return err
	}
	if o.version == "" {
		v, err := readTrimmed(o.image + ".version")
		if err != nil {
			return fmt.Errorf("no -version and %w", err)
		}
		o.version = v
	}
	return update(ctx, dev, &o, stdout, stderr)
}

// update installs an image on a running appliance without risking it, at
// the cost of one reboot (gokrazy's update protocol, see the gokrazy
// notes):
//
//  1. the new root file system goes to the inactive root partition, and the
//     CRC-32 the device computed of what it wrote must be that of the whole
//     file system (an empty or short upload is never booted);
//  2. the new boot partition goes in (CRC-checked too) with its command
//     line still naming the running root plus gokrazy.try_boot_inactive=1:
//     at the next boot the old root's init turns the marker off and
//     switches into the new root, for that boot only;
//  3. after the reboot the new version must answer: elit's status page with
//     the image's version, and an SMTP banner;
//  4. then POST /update/switch names the running root, the new one, in the
//     boot partition: the trial boot is the permanent system, and the next
//     boot, whenever it comes, starts it. No second reboot.
//
// When the new version does not answer, the device is rebooted (by us, by
// the kernel's panic=10, or by the watchdog) and the old root comes back.
// gokrazy picks the partition an update writes from the command line the
// system booted with, which in a trial boot names the old root: an update
// of an appliance still in the trial boot of the last one (no reboot since)
// reboots it first. (gokrazy's own POST /update/testboot would do step 2,
// but it appends the marker after a newline that monogok's command lines
// do not have.)
func update(ctx context.Context, d *device, o *updateOptions, stdout, stderr io.Writer) error {
	root, boot, err := readImageParts(o.image)
	if err != nil {
		return err
	}
	features, err := d.get(ctx, "/update/features")
	if err != nil {
		return fmt.Errorf("the appliance at %s: %w", o.ep.update, err)
	}
	if !strings.Contains(features, "updatehash") {
		return fmt.Errorf("the appliance at %s cannot check uploads (features %q); update it by flashing", o.ep.update, features)
	}
	st, err := d.state(ctx)
	if err != nil {
		return fmt.Errorf("elit's status page at %s: %w", o.ep.status, err)
	}
	if st.Boot.Trial {
		fmt.Fprintf(stdout, "the appliance runs %s in the trial boot of the last update, and gokrazy would write over it: rebooting it first\n", st.Version)
		d.post(ctx, "/reboot")
		if st, err = d.waitFor(ctx, o.ep.smtp, st, o.timeout, func(s *applianceState) error {
			if s.Boot.Trial {
				return errors.New("still a trial boot")
			}
			return nil
		}); err != nil {
			return fmt.Errorf("rebooting before the update: %w", err)
		}
	}
	old := st.Version
	switch {
	case st.Boot.RootPartition != 2 && st.Boot.RootPartition != 3:
		return fmt.Errorf("the appliance does not say which root partition it booted (version %s); update it by flashing", old)
	case old == o.version:
		return fmt.Errorf("the appliance already runs version %s", o.version)
	}
	if err := trialBoot(boot, st.Boot.RootPartition); err != nil {
		return fmt.Errorf("%s: %w", o.image, err)
	}
	fmt.Fprintf(stdout, "updating %s from %s to %s\n", o.ep.update, old, o.version)
	start := time.Now()
	if err := d.upload(ctx, "/update/root", root, stderr); err != nil {
		return fmt.Errorf("root file system: %w", err)
	}
	// The boot partition is written in place: a broken upload leaves it
	// damaged, so it is tried again before giving up (and never followed
	// by a reboot).
	for attempt := 1; ; attempt++ {
		err := d.upload(ctx, "/update/boot", boot, stderr)
		if err == nil {
			break
		}
		if attempt == 3 || ctx.Err() != nil {
			return fmt.Errorf("boot file system: %w; do NOT reboot the appliance before an update succeeds", err)
		}
		fmt.Fprintf(stdout, "boot file system: %v; trying again\n", err)
	}
	rebootAt := time.Now()
	d.post(ctx, "/reboot") // the connection may drop as the device goes down
	fmt.Fprintf(stdout, "uploaded in %.1fs; trial boot of the new version\n", rebootAt.Sub(start).Seconds())
	trial, err := d.waitFor(ctx, o.ep.smtp, st, o.timeout, func(s *applianceState) error {
		switch {
		case s.Version == old && !s.Boot.Trial:
			return errBackByItself
		case s.Version != o.version:
			return fmt.Errorf("version %s answers", s.Version)
		}
		return nil
	})
	if errors.Is(err, errBackByItself) {
		return fmt.Errorf("update failed: the new version did not come up; %s is running again (the watchdog ended the trial)", old)
	}
	if err != nil {
		return rollBack(ctx, d, o, old, err, stdout)
	}
	fmt.Fprintf(stdout, "version %s answers (%.1fs after the reboot); making it permanent\n", o.version, time.Since(rebootAt).Seconds())
	if _, err := d.post(ctx, "/update/switch"); err != nil {
		return fmt.Errorf("%w (the trial runs; a reboot brings back %s)", err, old)
	}
	// gokrazy does not sync what it wrote: elit does, before a power cut
	// can lose the switch.
	if _, err := d.do(ctx, http.MethodPost, d.status+"/sync", nil, 0, nil); err != nil {
		fmt.Fprintf(stdout, "the appliance did not sync its disk (%v): the switch reaches it within 30 s\n", err)
	}
	fmt.Fprintf(stdout, "updated to %s in %.1fs, one reboot: the trial boot (root partition %d) is the permanent system now\n",
		o.version, time.Since(start).Seconds(), 5-trial.Boot.RootPartition)
	return nil
}

// rollBack reboots a trial that did not come up into the old version.
func rollBack(ctx context.Context, d *device, o *updateOptions, old string, why error, stdout io.Writer) error {
	fmt.Fprintf(stdout, "the new version did not come up: %v\nrolling back: rebooting into %s\n", why, old)
	trial, _ := d.state(ctx)
	if trial == nil {
		trial = &applianceState{Version: o.version}
	}
	d.post(ctx, "/reboot")
	if _, err := d.waitFor(ctx, o.ep.smtp, trial, o.timeout, func(s *applianceState) error {
		if s.Version != old {
			return fmt.Errorf("version %s answers", s.Version)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("update failed (%v), and the old version is not back yet: %w", why, err)
	}
	return fmt.Errorf("update failed (%v); %s is running again", why, old)
}

// tryMarker makes gokrazy's init boot the inactive root once.
const tryMarker = " gokrazy.try_boot_inactive=1"

// trialBoot edits the kernel command lines in a boot file system image
// (cmdline.txt, and the systemd-boot entry on PCs) in place: root names
// partition active (2 or 3) and tryMarker is appended in the space padding
// gokrazy leaves, so no file changes length.
func trialBoot(boot []byte, active int) error {
	n := 0
	for i := 0; ; {
		j := bytes.Index(boot[i:], []byte("root=PARTUUID="))
		if j < 0 {
			break
		}
		i += j
		end := i
		for end < len(boot) && boot[end] != 0 && boot[end] != '\n' {
			end++
		}
		line := boot[i:end]
		k := bytes.Index(line, []byte("/PARTNROFF="))
		if k < 0 || k+len("/PARTNROFF=") >= len(line) {
			return errors.New("kernel command line without PARTNROFF")
		}
		line[k+len("/PARTNROFF=")] = byte('0' + active - 1)
		text := len(bytes.TrimRight(line, " "))
		if bytes.Contains(line[:text], []byte(tryMarker)) {
			return errors.New("the image's command line already asks for a trial boot")
		}
		if len(line)-text < len(tryMarker) {
			return errors.New("no room in the kernel command line for the trial-boot marker")
		}
		copy(line[text:], tryMarker)
		n++
		i = end
	}
	if n == 0 {
		return errors.New("no kernel command line in the boot partition")
	}
	return nil
}

// readImageParts returns the root file system (partition 2, as long as the
// squashfs says it is) and the boot file system (partition 1) of an image,
// refusing a truncated or damaged one.
func readImageParts(path string) (root, boot []byte, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	t, err := gpt.Read(f)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	pb, err1 := t.Number(1)
	pr, err2 := t.Number(2)
	if err1 != nil || err2 != nil {
		return nil, nil, fmt.Errorf("%s: not a gokrazy image (no partitions 1 and 2)", path)
	}
	used := bytesUsed(f, pr.Offset())
	if used == 0 {
		return nil, nil, fmt.Errorf("%s: partition 2 holds no squashfs root file system (truncated image?)", path)
	}
	n := (used + 4095) &^ 4095
	if used < 4096 || n > pr.Size() {
		return nil, nil, fmt.Errorf("%s: implausible root file system size %d", path, used)
	}
	if end := pr.Offset() + n; end > fi.Size() {
		return nil, nil, fmt.Errorf("%s is truncated: the root file system ends at byte %d, the file at %d", path, end, fi.Size())
	}
	if end := pb.Offset() + pb.Size(); end > fi.Size() {
		return nil, nil, fmt.Errorf("%s is truncated: the boot partition ends at byte %d, the file at %d", path, end, fi.Size())
	}
	root = make([]byte, n)
	if _, err := f.ReadAt(root, pr.Offset()); err != nil {
		return nil, nil, err
	}
	boot = make([]byte, pb.Size())
	if _, err := f.ReadAt(boot, pb.Offset()); err != nil {
		return nil, nil, err
	}
	if boot[510] != 0x55 || boot[511] != 0xaa {
		return nil, nil, fmt.Errorf("%s: partition 1 holds no FAT boot file system", path)
	}
	return root, boot, nil
}
