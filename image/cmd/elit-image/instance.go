package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/google/renameio/v2"
)

// An instance is one appliance, kept in a directory of its own as gok keeps
// ~/gokrazy/NAME: what every command needs to build it, boot it, flash
// it, update it and push its users, so that nothing can disagree.
//
//	instance.json  the settings (instanceSettings)
//	password       the web and update password (made by new)
//	tls.pem        the appliance's self-signed certificate and
//	tls.key        its key (made by new; the key is pinned)
//	pins           more keys to accept, one pin a line (elit-image pin)
//	elit.img       the last image built, with elit.img.version
type instance struct {
	Name, Dir string
	instanceSettings
}

// instanceSettings is instance.json. Paths are relative to the instance
// directory unless absolute.
type instanceSettings struct {
	Target    string   `json:"target"`
	Domain    string   `json:"domain"`
	Hostname  string   `json:"hostname"`
	DB        string   `json:"db"`
	ElitFlags []string `json:"elit_flags,omitempty"`
	Size      string   `json:"size,omitempty"`
	DBSize    string   `json:"db_size,omitempty"`
	Format    string   `json:"format,omitempty"`
	// Host is where the appliance answers (a name or an address), and
	// the ports: gokrazy's update endpoint (HTTPS), elit's status page
	// and database push (HTTPS), SMTP. For an appliance in QEMU, the
	// forwarded ports on 127.0.0.1, which elit-image qemu uses.
	Host       string `json:"host,omitempty"`
	UpdatePort int    `json:"update_port,omitempty"`
	StatusPort int    `json:"status_port,omitempty"`
	SMTPPort   int    `json:"smtp_port,omitempty"`
}

// The files of an instance.
const (
	instanceFile = "instance.json"
	passwordFile = "password"
	certFile     = "tls.pem"
	keyFile      = "tls.key"
	pinsFile     = "pins"
	imageFile    = "elit.img"
)

// instancesDir is where instances named without a slash live:
// $ELIT_INSTANCES, else ~/elit.
func instancesDir() (string, error) {
	if d := os.Getenv("ELIT_INSTANCES"); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no home directory for the instances (set ELIT_INSTANCES): %w", err)
	}
	return filepath.Join(home, "elit"), nil
}

// instancePath is the directory of instance name: a path if it has a
// slash, else a directory in instancesDir.
func instancePath(name string) (string, error) {
	if strings.ContainsRune(name, os.PathSeparator) {
		return filepath.Abs(name)
	}
	if name == "" || name == "." || name == ".." {
		return "", fmt.Errorf("instance name %q", name)
	}
	d, err := instancesDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, name), nil
}

// loadInstance reads instance name.
func loadInstance(name string) (*instance, error) {
	dir, err := instancePath(name)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(dir, instanceFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no instance %s (%s): make it with elit-image new -i %s", name, dir, name)
	}
	if err != nil {
		return nil, err
	}
	in := &instance{Name: name, Dir: dir}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in.instanceSettings); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, instanceFile), err)
	}
	return in, nil
}

// path resolves a path of the settings.
func (in *instance) path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(in.Dir, p)
}

func (in *instance) file(name string) string { return filepath.Join(in.Dir, name) }

// pins are the keys the instance's appliance may show: its own, and those
// accepted since with elit-image pin.
func (in *instance) pins() ([]string, error) {
	cert, err := os.ReadFile(in.file(certFile))
	if err != nil {
		return nil, err
	}
	own, err := pinOf(cert)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", in.file(certFile), err)
	}
	pins := []string{own}
	b, err := os.ReadFile(in.file(pinsFile))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			if err := checkPin(l); err != nil {
				return nil, fmt.Errorf("%s: %w", in.file(pinsFile), err)
			}
			pins = append(pins, l)
		}
	}
	return pins, nil
}

// addPin adds pin to the instance's pins file.
func (in *instance) addPin(pin string) error {
	b, err := os.ReadFile(in.file(pinsFile))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if slices.Contains(strings.Fields(string(b)), pin) {
		return nil
	}
	return renameio.WriteFile(in.file(pinsFile), append(b, pin+"\n"...), 0o644)
}

// addr is host:port of one of the appliance's endpoints: the instance's
// port, else def.
func (in *instance) addr(port, def int) string {
	if port == 0 {
		port = def
	}
	return net.JoinHostPort(in.Host, strconv.Itoa(port))
}

// cmdNew makes an instance: its directory, settings, password and key.
func cmdNew(args []string, stdout, stderr io.Writer) error {
	var name string
	var s instanceSettings
	var flags multiFlag
	fs := flag.NewFlagSet("elit-image new", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&name, "i", "", "the instance `name` (a directory in $ELIT_INSTANCES, default ~/elit) or directory")
	fs.StringVar(&s.Target, "target", "vm", "`target`: vm (amd64 PC or VM), arm64 (arm64 UEFI PC or VM) or rpi (Raspberry Pi 3/4/5/Zero 2 W)")
	fs.StringVar(&s.Domain, "domain", "", "the mail `domain` (required)")
	fs.StringVar(&s.Hostname, "hostname", "", "the MX and submission host `name` (default mail.DOMAIN); the certificate names it")
	fs.StringVar(&s.DB, "db", "", "the user database, a JSON `file` or OneFFS image (kept as a path; default users.json in the instance)")
	fs.StringVar(&s.Size, "size", "2G", "image `size`")
	fs.StringVar(&s.DBSize, "db-size", "16M", "`size` of the database partition")
	fs.StringVar(&s.Format, "format", "fail-safe", "OneFFS `format` of the database partition")
	fs.StringVar(&s.Host, "host", "", "where the appliance answers once it runs, a `name` or address (update, db push)")
	fs.IntVar(&s.UpdatePort, "update-port", 0, "`port` of gokrazy's update endpoint on -host (default 8443, HTTPS)")
	fs.IntVar(&s.StatusPort, "status-port", 0, "`port` of elit's status page on -host (default 8025, HTTPS)")
	fs.IntVar(&s.SMTPPort, "smtp-port", 0, "SMTP `port` on -host (default 25)")
	fs.Var(&flags, "elit-flag", "one more command-line `flag` for elit serve (repeatable)")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if name == "" || s.Domain == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: elit-image new -i NAME -domain DOMAIN [-target vm|arm64|rpi] [-hostname H] [-db users.json] [-host H] [flags]")
		return errUsage
	}
	s.ElitFlags = flags
	if s.Hostname == "" {
		s.Hostname = "mail." + s.Domain
	}
	if !slices.Contains(targets, s.Target) {
		return fmt.Errorf("-target %q: want one of %s", s.Target, strings.Join(targets, ", "))
	}
	for _, v := range []string{s.Size, s.DBSize} {
		if _, err := parseSize(v); err != nil {
			return err
		}
	}
	dir, err := instancePath(name)
	if err != nil {
		return err
	}
	if s.DB == "" {
		s.DB = "users.json"
	} else if s.DB, err = filepath.Abs(s.DB); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); errors.Is(err, os.ErrExist) {
		return fmt.Errorf("instance %s exists (%s); edit its %s", name, dir, instanceFile)
	} else if err != nil {
		return err
	}
	certPEM, keyPEM, err := makeKeyPair(s.Hostname)
	if err != nil {
		return err
	}
	settings, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{passwordFile, []byte(randomPassword() + "\n"), 0o600},
		{keyFile, keyPEM, 0o600},
		{certFile, certPEM, 0o644},
		{instanceFile, append(settings, '\n'), 0o644},
	} {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	pin, _ := pinOf(certPEM)
	fmt.Fprintf(stdout, "instance %s in %s: %s for %s (%s)\n  the appliance's key: %s\n", name, dir, s.Target, s.Domain, s.Hostname, pin)
	if _, err := os.Stat(filepath.Join(dir, s.DB)); s.DB == "users.json" && err != nil {
		fmt.Fprintf(stdout, "  put the user database in %s (elit passwd makes its entries)\n", filepath.Join(dir, s.DB))
	}
	return nil
}

// confirm asks question on w and reads y or yes from r.
func confirm(r io.Reader, w io.Writer, question string) bool {
	fmt.Fprintf(w, "%s [y/N] ", question)
	line, _ := bufio.NewReader(r).ReadString('\n')
	a := strings.ToLower(strings.TrimSpace(line))
	return a == "y" || a == "yes"
}
