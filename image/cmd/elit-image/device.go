package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// deviceFlags are how the commands that talk to a running appliance find
// it and know it: an instance (-i), or a host, a password and a pinned key.
type deviceFlags struct {
	instance                     string
	host, password, passwordFile string
	pins                         multiFlag
	certFile                     string
	insecureHTTP                 bool
}

func (d *deviceFlags) register(fs *flag.FlagSet, defaultPort string) {
	fs.StringVar(&d.instance, "i", "", "the appliance's instance `name` (elit-image new): where it answers, its password and key")
	fs.StringVar(&d.host, "host", "", "the appliance, `host[:port]` (default port "+defaultPort+")")
	fs.StringVar(&d.password, "password", "", "the appliance's `password` (default: read from -password-file)")
	fs.StringVar(&d.passwordFile, "password-file", "", "`file` holding the password (default: IMAGE.password)")
	fs.Var(&d.pins, "pin", "the appliance's TLS key, `sha256//BASE64` as elit-image pin prints it (repeatable; default: the key of -cert)")
	fs.StringVar(&d.certFile, "cert", "", "pin the key of this certificate, PEM `file` (default: IMAGE.tls.pem)")
	fs.BoolVar(&d.insecureHTTP, "insecure-http", false, "talk plain HTTP, without TLS (an appliance built before TLS): the password and what is sent can be read and changed on the way")
}

// endpoints are where an appliance answers: gokrazy's update API, elit's
// status page, SMTP.
type endpoints struct {
	update, status, smtp string // host:port
}

// resolve makes the device of the flags. image is the image being
// installed ("" for none): its password and certificate serve when the
// flags name none. An instance decides everything, and flags that would
// contradict it are refused.
func (d *deviceFlags) resolve(fs *flag.FlagSet, image string, ep *endpoints) (*device, error) {
	if d.instance != "" {
		return d.fromInstance(fs, ep)
	}
	if d.host == "" {
		return nil, errors.New("give -i NAME or -host")
	}
	host, port, err := net.SplitHostPort(d.host)
	if err != nil {
		host = strings.Trim(d.host, "[]")
	}
	if ep.update == "" {
		ep.update = net.JoinHostPort(host, cmpOr(port, strconv.Itoa(updatePort), d.insecureHTTP))
	}
	if ep.status == "" {
		ep.status = net.JoinHostPort(host, strconv.Itoa(statusPort))
	}
	if ep.smtp == "" {
		ep.smtp = net.JoinHostPort(host, strconv.Itoa(defaultSMTPort))
	}
	pw := d.password
	if pw == "" {
		f := d.passwordFile
		if f == "" && image != "" {
			f = image + ".password"
		}
		if f == "" {
			return nil, errors.New("give -i NAME, -password or -password-file")
		}
		if pw, err = readTrimmed(f); err != nil {
			return nil, fmt.Errorf("no -password and %w", err)
		}
	}
	pins := []string(d.pins)
	for _, p := range pins {
		if err := checkPin(p); err != nil {
			return nil, err
		}
	}
	cert := d.certFile
	if cert == "" && len(pins) == 0 && image != "" {
		cert = image + ".tls.pem"
	}
	if cert != "" {
		b, err := os.ReadFile(cert)
		if err != nil {
			return nil, fmt.Errorf("the appliance's key: %w", err)
		}
		p, err := pinOf(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cert, err)
		}
		pins = append(pins, p)
	}
	return d.device(ep, pw, pins)
}

// cmpOr is port, or def when port is empty (plain HTTP: gokrazy's port 80).
func cmpOr(port, def string, insecure bool) string {
	switch {
	case port != "":
		return port
	case insecure:
		return strconv.Itoa(plainHTTPPort)
	}
	return def
}

// fromInstance makes the device of instance d.instance.
func (d *deviceFlags) fromInstance(fs *flag.FlagSet, ep *endpoints) (*device, error) {
	set := map[string]bool{}
	if fs != nil {
		set = setFlags(fs)
	}
	for _, f := range []string{"host", "password", "password-file", "pin", "cert", "status", "smtp"} {
		if set[f] {
			return nil, fmt.Errorf("-%s: with -i, the instance's settings decide (edit its %s, or elit-image pin)", f, instanceFile)
		}
	}
	in, err := loadInstance(d.instance)
	if err != nil {
		return nil, err
	}
	if in.Host == "" {
		return nil, fmt.Errorf("instance %s: no host in its %s: say where the appliance answers", in.Name, instanceFile)
	}
	pw, err := readTrimmed(in.file(passwordFile))
	if err != nil {
		return nil, err
	}
	pins, err := in.pins()
	if err != nil {
		return nil, err
	}
	*ep = endpoints{update: in.addr(in.UpdatePort, updatePort), status: in.addr(in.StatusPort, statusPort), smtp: in.addr(in.SMTPPort, defaultSMTPort)}
	return d.device(ep, pw, pins)
}

func (d *deviceFlags) device(ep *endpoints, password string, pins []string) (*device, error) {
	scheme := "https://"
	if d.insecureHTTP {
		scheme, pins = "http://", nil
	} else if len(pins) == 0 {
		return nil, errors.New("no TLS key to pin: give -i NAME, -pin or -cert (elit-image pin shows the appliance's key), or -insecure-http")
	}
	t := newTransport(pins)
	return &device{base: scheme + ep.update, status: scheme + ep.status, password: password,
		client: &http.Client{Timeout: 30 * time.Second, Transport: t}, uploads: &http.Client{Transport: t}}, nil
}

// device is a gokrazy appliance's update API (base) and elit's status page,
// over TLS to the pinned keys.
type device struct {
	base, status, password string
	client                 *http.Client // with a timeout
	uploads                *http.Client // uploads take as long as they take
}

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
	c := d.client
	if body != nil {
		c = d.uploads
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode == http.StatusUnauthorized {
		return "", fmt.Errorf("%s %s: %s: the appliance refused the password; it is the one of the image it runs "+
			"(an instance keeps it: -i NAME; else -password-file with that image's .password file), and a build "+
			"without one makes a new password", method, url, resp.Status)
	}
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

// settle is how long a device takes to go down when told to reboot, and
// poll how often waitFor asks.
var settle, poll = 5 * time.Second, time.Second

// errBackByItself is a trial boot that ended without us: the old version
// answers from a normal boot (the watchdog reset the machine).
var errBackByItself = errors.New("the trial boot ended and the old version came back by itself")

// waitFor waits, up to timeout, for elit to answer from a boot after
// before's, and to greet on smtp: accept says whether what answers is what
// is awaited (nil), the end of the wait (errBackByItself), or not yet
// (another error).
func (d *device) waitFor(ctx context.Context, smtp string, before *applianceState, timeout time.Duration, accept func(*applianceState) error) (*applianceState, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := errors.New("no answer")
	// The device needs a moment to go down; an answer before it did is
	// the old system.
	sleep(ctx, settle)
	for ctx.Err() == nil {
		st, err := d.state(ctx)
		if err == nil && st.Started.Equal(before.Started) {
			err = errors.New("the device has not rebooted yet")
		}
		if err == nil {
			err = accept(st)
		}
		if err == nil {
			if err = smtpBanner(ctx, smtp); err == nil {
				return st, nil
			}
			err = fmt.Errorf("SMTP: %w", err)
		}
		if errors.Is(err, errBackByItself) || errors.Is(err, errPinMismatch) {
			return st, err
		}
		last = err
		sleep(ctx, poll)
	}
	return nil, fmt.Errorf("after %v: %w", timeout, last)
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
