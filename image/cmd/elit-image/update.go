package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"elit.local/image/gpt"
)

// updateOptions is what elit-image update is told.
type updateOptions struct {
	deviceFlags
	image, status, smtp, version string
	timeout                      time.Duration
}

func cmdUpdate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o updateOptions
	fs := flag.NewFlagSet("elit-image update", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.register(fs, "80")
	fs.StringVar(&o.status, "status", "", "elit's status page, `host:port` (default: the -host host, port 8025)")
	fs.StringVar(&o.smtp, "smtp", "", "the SMTP server to check, `host:port` (default: the -host host, port 25)")
	fs.StringVar(&o.version, "version", "", "the `version` the image holds (default: from IMAGE.version, written by build)")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "how long to wait for each reboot")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() != 1 || o.host == "" {
		fmt.Fprintln(stderr, "usage: elit-image update -host H[:port] [-password P] elit.img")
		return errUsage
	}
	o.image = fs.Arg(0)
	if err := o.resolve(o.image, "80"); err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(o.host)
	if o.status == "" {
		o.status = net.JoinHostPort(host, "8025")
	}
	if o.smtp == "" {
		o.smtp = net.JoinHostPort(host, "25")
	}
	if o.version == "" {
		v, err := readTrimmed(o.image + ".version")
		if err != nil {
			return fmt.Errorf("no -version and %w", err)
		}
		o.version = v
	}
	return update(ctx, &o, stdout, stderr)
}

// update installs an image on a running appliance without risking it
// (gokrazy's update protocol, see the gokrazy notes):
//
//  1. the new root file system goes to the inactive root partition, and the
//     CRC-32 the device computed of what it wrote must be that of the whole
//     file system (an empty or short upload is never booted);
//  2. the new boot partition goes in (CRC-checked too) with its command
//     line still naming the old root plus gokrazy.try_boot_inactive=1: at
//     the next boot the old root's init turns the marker off and switches
//     into the new root, for that boot only;
//  3. after the reboot the new version must answer: elit's status page with
//     the image's version, and an SMTP banner;
//  4. only then POST /update/switch names the new root in the boot
//     partition, and a last reboot checks it.
//
// When the new version does not answer, the device is rebooted (by us, by
// the kernel's panic=10, or by the watchdog) and the old root comes back.
// (gokrazy's own POST /update/testboot would do step 2, but it appends the
// marker after a newline that monogok's command lines do not have.)
func update(ctx context.Context, o *updateOptions, stdout, stderr io.Writer) error {
	root, boot, err := readImageParts(o.image)
	if err != nil {
		return err
	}
	d := &device{base: "http://" + o.host, status: "http://" + o.status, password: o.password}
	features, err := d.get(ctx, "/update/features")
	if err != nil {
		return fmt.Errorf("the appliance at %s: %w", o.host, err)
	}
	if !strings.Contains(features, "updatehash") {
		return fmt.Errorf("the appliance at %s cannot check uploads (features %q); update it by flashing", o.host, features)
	}
	st, err := d.state(ctx)
	if err != nil {
		return fmt.Errorf("elit's status page at %s: %w", o.status, err)
	}
	old := st.Version
	switch {
	case st.Boot.Trial:
		return fmt.Errorf("the appliance runs a trial boot; reboot it to get back to its permanent version first")
	case st.Boot.RootPartition != 2 && st.Boot.RootPartition != 3:
		return fmt.Errorf("the appliance does not say which root partition it booted (version %s); update it by flashing", old)
	case old == o.version:
		return fmt.Errorf("the appliance already runs version %s", o.version)
	}
	if err := trialBoot(boot, st.Boot.RootPartition); err != nil {
		return fmt.Errorf("%s: %w", o.image, err)
	}
	fmt.Fprintf(stdout, "updating %s from %s to %s\n", o.host, old, o.version)
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
	err = d.waitFor(ctx, o.version, o.smtp, st, o.timeout)
	if errors.Is(err, errBackByItself) {
		return fmt.Errorf("update failed: the new version did not come up; %s is running again (the watchdog ended the trial)", old)
	}
	if err != nil {
		fmt.Fprintf(stdout, "the new version did not come up: %v\nrolling back: rebooting into %s\n", err, old)
		trial, _ := d.state(ctx)
		if trial == nil {
			trial = &applianceState{Version: o.version}
		}
		d.post(ctx, "/reboot")
		if werr := d.waitFor(ctx, old, o.smtp, trial, o.timeout); werr != nil {
			return fmt.Errorf("update failed (%v), and the old version is not back yet: %w", err, werr)
		}
		return fmt.Errorf("update failed (%v); %s is running again", err, old)
	}
	fmt.Fprintf(stdout, "version %s answers (%.1fs after the reboot); making it permanent\n", o.version, time.Since(rebootAt).Seconds())
	trial, err := d.state(ctx)
	if err != nil {
		return fmt.Errorf("%w (the trial ended; %s runs)", err, old)
	}
	if _, err := d.post(ctx, "/update/switch"); err != nil {
		return fmt.Errorf("%w (the trial runs; a reboot brings back %s)", err, old)
	}
	d.post(ctx, "/reboot")
	if err := d.waitFor(ctx, o.version, o.smtp, trial, o.timeout); err != nil {
		return fmt.Errorf("after the switch: %w", err)
	}
	fmt.Fprintf(stdout, "updated to %s in %.1fs\n", o.version, time.Since(start).Seconds())
	return nil
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
	// The squashfs superblock: magic "hsqs", bytes_used (le64) at byte 40.
	sb := make([]byte, 96)
	if _, err := f.ReadAt(sb, pr.Offset()); err != nil || string(sb[:4]) != "hsqs" {
		return nil, nil, fmt.Errorf("%s: partition 2 holds no squashfs root file system (truncated image?)", path)
	}
	used := int64(binary.LittleEndian.Uint64(sb[40:]))
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

// device is a gokrazy appliance's update API (base) and elit's status page.
type device struct {
	base, status, password string
}

// A device reboots under us: never reuse a connection (a POST on a pooled
// connection that died with the old system fails with EOF).
var (
	noKeepAlive = &http.Transport{DisableKeepAlives: true, Proxy: nil}
	httpClient  = &http.Client{Timeout: 30 * time.Second, Transport: noKeepAlive}
)

func (d *device) do(ctx context.Context, method, url string, body io.Reader, n int64, hdr map[string]string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return "", err
	}
	req.ContentLength = n
	req.SetBasicAuth("gokrazy", d.password)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := httpClient
	if body != nil {
		c = &http.Client{Transport: noKeepAlive} // uploads take as long as they take
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, bytes.TrimSpace(b))
	}
	return string(b), nil
}

func (d *device) get(ctx context.Context, path string) (string, error) {
	return d.do(ctx, http.MethodGet, d.base+path, nil, 0, nil)
}

func (d *device) post(ctx context.Context, path string) (string, error) {
	return d.do(ctx, http.MethodPost, d.base+path, nil, 0, nil)
}

// upload PUTs data and checks the CRC-32 the device computed of what it
// wrote against the data's.
func (d *device) upload(ctx context.Context, path string, data []byte, progress io.Writer) error {
	want := fmt.Sprintf("%08x", crc32.ChecksumIEEE(data))
	body := &progressReader{r: bytes.NewReader(data), total: int64(len(data)), w: progress, label: path}
	got, err := d.do(ctx, http.MethodPut, d.base+path, body, int64(len(data)), map[string]string{"X-Gokrazy-Update-Hash": "crc32"})
	body.finish()
	if err != nil {
		return err
	}
	// gokrazy prints the hash with %x, without leading zeros.
	if strings.TrimLeft(strings.TrimSpace(got), "0") != strings.TrimLeft(want, "0") {
		return fmt.Errorf("the device wrote something else: CRC-32 %q, want %s; not switching to it", got, want)
	}
	return nil
}

// applianceState is the part of elit's status.json update needs.
type applianceState struct {
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	Queue   struct {
		Messages int `json:"messages"`
		Pending  int `json:"pending_recipients"`
	} `json:"queue"`
	Boot struct {
		RootPartition int  `json:"root_partition"`
		Trial         bool `json:"trial"`
	} `json:"boot"`
}

// state asks elit's status page what runs.
func (d *device) state(ctx context.Context) (*applianceState, error) {
	s, err := d.do(ctx, http.MethodGet, d.status+"/status.json", nil, 0, nil)
	if err != nil {
		return nil, err
	}
	var st applianceState
	if err := json.Unmarshal([]byte(s), &st); err != nil {
		return nil, fmt.Errorf("status.json: %w", err)
	}
	return &st, nil
}

// errBackByItself is a trial boot that ended without us: the old version
// answers from a normal boot (the watchdog reset the machine).
var errBackByItself = errors.New("the trial boot ended and the old version came back by itself")

// waitFor waits until elit, started after before was, answers with version
// on its status page and greets on smtp, or timeout passes. Once the old
// version answers from a normal boot, a trial is over: errBackByItself.
func (d *device) waitFor(ctx context.Context, version, smtp string, before *applianceState, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := errors.New("no answer")
	// The device needs a moment to go down; an answer before it did is
	// the old system.
	sleep(ctx, 5*time.Second)
	for ctx.Err() == nil {
		st, err := d.state(ctx)
		switch {
		case err != nil:
			last = err
		case st.Started.Equal(before.Started):
			last = errors.New("the device has not rebooted yet")
		case st.Version == before.Version && version != before.Version && !st.Boot.Trial:
			return errBackByItself
		case st.Version != version:
			last = fmt.Errorf("version %s answers", st.Version)
		default:
			if err := smtpBanner(ctx, smtp); err != nil {
				last = fmt.Errorf("SMTP: %w", err)
				break
			}
			return nil
		}
		sleep(ctx, 2*time.Second)
	}
	return fmt.Errorf("after %v: %w", timeout, last)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// smtpBanner checks that addr greets with 220 (RFC 5321 §4.2).
func smtpBanner(ctx context.Context, addr string) error {
	var dialer net.Dialer
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "220 ") && !strings.HasPrefix(line, "220-") {
		return fmt.Errorf("greeting %q", strings.TrimSpace(line))
	}
	fmt.Fprintf(c, "QUIT\r\n")
	return nil
}

// progressReader draws a progress bar on w as it is read. An HTTP request
// body is read by the transport's goroutine, which may still be at it when
// the response has come: hence the lock.
type progressReader struct {
	r           io.Reader
	w           io.Writer
	label       string
	mu          sync.Mutex
	total, done int64
	last        time.Time
	start       time.Time
}

func (p *progressReader) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.start.IsZero() {
		p.start = time.Now()
	}
	n, err := p.r.Read(b)
	p.done += int64(n)
	if time.Since(p.last) > 200*time.Millisecond || err == io.EOF {
		p.last = time.Now()
		p.draw()
	}
	return n, err
}

func (p *progressReader) draw() {
	if p.w == nil || p.total == 0 {
		return
	}
	const width = 30
	filled := int(p.done * width / p.total)
	rate := float64(p.done) / (1 << 20) / max(time.Since(p.start).Seconds(), 0.001)
	fmt.Fprintf(p.w, "\r%-14s [%s%s] %3d%% %6.1f/%.1f MiB %5.1f MiB/s", p.label,
		strings.Repeat("=", filled), strings.Repeat(" ", width-filled), p.done*100/p.total,
		float64(p.done)/(1<<20), float64(p.total)/(1<<20), rate)
}

func (p *progressReader) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.w != nil {
		p.draw()
		fmt.Fprintln(p.w)
	}
}
