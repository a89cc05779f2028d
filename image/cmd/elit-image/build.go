package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"elit.local/elit/userdb"
	"elit.local/image/gpt"
	"elit.local/oneffs"
)

// targets are the appliance configurations in appliance/ that build makes
// images of (hello is the baseline of make bench).
var targets = []string{"vm", "arm64", "rpi", "hello"}

// buildOptions is what elit-image build is told.
type buildOptions struct {
	target, db, domain, hostname, out, version, format, src string
	password, passwordFile, certFile, keyFile               string
	size, dbSize                                            int64
	elitFlags                                               multiFlag
	verbose                                                 bool
	inst                                                    *instance

	// Set by build.
	keys            *keyPair
	newKey          bool      // keys made by this build
	date            time.Time // every time stamp in the image
	notReproducible []string  // why another build would differ
	digest          string    // the image's SHA-256
	rootSize        int64
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

// sizeFlag is a byte count written as 2G, 512M, 64K or plain bytes.
type sizeFlag struct{ n *int64 }

func (s sizeFlag) String() string {
	if s.n == nil {
		return ""
	}
	return strconv.FormatInt(*s.n, 10)
}

func (s sizeFlag) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s.n = n
	return nil
}

func parseSize(v string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(v, "G"):
		mult, v = 1<<30, strings.TrimSuffix(v, "G")
	case strings.HasSuffix(v, "M"):
		mult, v = 1<<20, strings.TrimSuffix(v, "M")
	case strings.HasSuffix(v, "K"):
		mult, v = 1<<10, strings.TrimSuffix(v, "K")
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("size %q: want a positive number of bytes, optionally with K, M or G", v)
	}
	return n * mult, nil
}

// buildFlags are the flags of build (and of update, which may build).
func (o *buildOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.target, "target", "vm", "`target`: vm (amd64 PC or VM), arm64 (arm64 UEFI PC or VM), rpi (Raspberry Pi 3/4/5/Zero 2 W); hello is the baseline of make bench")
	fs.StringVar(&o.db, "db", "", "user database: a JSON `file` or a OneFFS image (required)")
	fs.StringVar(&o.domain, "domain", "", "the mail `domain` (without it, elit on the appliance stays stopped: exit 125, unconfigured)")
	fs.StringVar(&o.hostname, "hostname", "", "the MX and submission host `name` (default mail.DOMAIN)")
	fs.StringVar(&o.out, "o", "", "output image `file` (required without -i); its password, key and version go next to it")
	fs.StringVar(&o.password, "password", "", "the appliance's web and update `password`")
	fs.StringVar(&o.passwordFile, "password-file", "", "`file` holding the password (default: FILE.password if it exists, else a new random one)")
	fs.StringVar(&o.certFile, "tls-cert", "", "the appliance's certificate, PEM `file` (default: FILE.tls.pem if it exists, else a new self-signed one)")
	fs.StringVar(&o.keyFile, "tls-key", "", "its key, PEM `file` (default: FILE.tls.key)")
	fs.StringVar(&o.version, "version", "", "version `string` of elit in the image (default: git describe of the source); the source date and a digest of the settings are added, and the whole goes to FILE.version")
	fs.StringVar(&o.format, "format", "fail-safe", "OneFFS `format` of the database partition: fail-safe or classic")
	fs.StringVar(&o.src, "src", "", "the Elit source `directory` (default: the module around the current directory)")
	fs.Var(sizeFlag{&o.size}, "size", "image `size` (at least 1300M; the disk it goes to can be larger)")
	fs.Var(sizeFlag{&o.dbSize}, "db-size", "`size` of the database partition")
	fs.Var(&o.elitFlags, "elit-flag", "one more command-line `flag` for elit serve, e.g. -elit-flag=-smarthost=10.0.2.100:25 (repeatable)")
	fs.BoolVar(&o.verbose, "v", false, "show monogok's output")
}

// instanceOnly are the build flags an instance gives: with -i, they are
// refused on the command line.
var instanceOnly = []string{"target", "db", "domain", "hostname", "password", "password-file", "tls-cert", "tls-key", "format", "size", "db-size"}

// fromInstance fills o from the instance name (settings given on the
// command line, set, are refused: the instance decides).
func (o *buildOptions) fromInstance(name string, set map[string]bool) error {
	for _, f := range instanceOnly {
		if set[f] {
			return fmt.Errorf("-%s: with -i, the instance's %s decides (edit it)", f, instanceFile)
		}
	}
	in, err := loadInstance(name)
	if err != nil {
		return err
	}
	o.inst = in
	o.target, o.domain, o.hostname, o.format = in.Target, in.Domain, in.Hostname, in.Format
	o.db = in.path(in.DB)
	o.elitFlags = append(slices.Clone(in.ElitFlags), o.elitFlags...)
	o.passwordFile, o.certFile, o.keyFile = in.file(passwordFile), in.file(certFile), in.file(keyFile)
	for _, s := range []struct {
		v string
		n *int64
	}{{in.Size, &o.size}, {in.DBSize, &o.dbSize}} {
		if s.v != "" {
			if *s.n, err = parseSize(s.v); err != nil {
				return fmt.Errorf("%s: %w", in.file(instanceFile), err)
			}
		}
	}
	if o.out == "" {
		o.out = in.file(imageFile)
	}
	return nil
}

func cmdBuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := buildOptions{size: 2 << 30, dbSize: 16 << 20}
	fs := flag.NewFlagSet("elit-image build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.register(fs)
	name := fs.String("i", "", "build instance `name` (elit-image new): its settings, password and key")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if *name != "" {
		if err := o.fromInstance(*name, setFlags(fs)); err != nil {
			return err
		}
	}
	if o.db == "" || o.out == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: elit-image build -i NAME [-o elit.img] | -target vm|arm64|rpi -db db.json|db.img -domain DOMAIN [flags] -o elit.img")
		return errUsage
	}
	return buildAndSay(ctx, &o, stdout, stderr)
}

// setFlags are the flags given on the command line.
func setFlags(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// buildAndSay builds and tells what was built, its SHA-256, and whether
// another build would give the same bytes.
func buildAndSay(ctx context.Context, o *buildOptions, stdout, stderr io.Writer) error {
	start := time.Now()
	if err := build(ctx, o, stderr); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "built %s (%s, elit %s, root file system %.1f MiB) in %.1fs\n", o.out, o.target, o.version,
		float64(o.rootSize)/(1<<20), time.Since(start).Seconds())
	fmt.Fprintf(stdout, "%s  %s\n", o.digest, o.out)
	if len(o.notReproducible) == 0 {
		fmt.Fprintln(stdout, "reproducible: the same source, database, settings, password and key give these bytes")
	} else {
		fmt.Fprintf(stdout, "not reproducible: %s\n", strings.Join(o.notReproducible, "; "))
	}
	return nil
}

// build makes the image: monogok writes the gokrazy partitions, the root
// and boot file systems are made reproducible, partition 5 "oneffs" is cut
// from the end of /perm, /perm is formatted, and the database is written
// into partition 5.
func build(ctx context.Context, o *buildOptions, stderr io.Writer) error {
	format, err := oneffs.ParseFormat(o.format)
	if err != nil {
		return err
	}
	if !slices.Contains(targets, o.target) {
		return fmt.Errorf("-target %q: want vm, arm64 or rpi", o.target)
	}
	if o.size < 1300<<20 {
		return fmt.Errorf("-size %d: gokrazy needs at least 1300M (boot 100M, two roots of 500M, /perm)", o.size)
	}
	db, err := readDB(o.db, o.domain)
	if err != nil {
		return err
	}
	if o.src == "" {
		if o.src, err = moduleRoot(); err != nil {
			return err
		}
	}
	if err := o.inputs(); err != nil {
		return err
	}
	var why string
	if o.date, why = sourceDate(o.src); why != "" {
		o.notReproducible = append(o.notReproducible, why)
	}
	if o.version == "" {
		o.version = gitVersion(o.src)
	}
	// The date and the settings make every distinct build's version
	// distinct: update tells the new system from the old by it.
	o.version += "+" + o.date.Format("20060102T150405") + "." + o.settingsDigest()

	// The config's path lands in the image (gokrazy's SBOM): always the
	// same one, so one build of a target at a time.
	unlock, err := lockFile(filepath.Join(o.src, "appliance", o.target, ".build.lock"))
	if err != nil {
		return err
	}
	defer unlock()
	dir := filepath.Join(o.src, "appliance", o.target, ".build")
	os.RemoveAll(dir)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := writeInstanceConfig(filepath.Join(o.src, "appliance", o.target, "config.json"), filepath.Join(dir, "config.json"), o); err != nil {
		return err
	}
	tmp := o.out + ".tmp"
	os.Remove(tmp)
	defer os.Remove(tmp)
	stamp, err := runMonogok(ctx, o, dir, tmp, stderr)
	if err != nil {
		return err
	}
	if o.rootSize, err = repackRoot(ctx, tmp, o.date, stamp); err != nil {
		return err
	}
	if err := stampBoot(tmp, o.date); err != nil {
		return err
	}
	if err := finishImage(tmp, db, o.dbSize, format, o.keys, o.date); err != nil {
		return err
	}
	if o.digest, err = imageDigest(tmp); err != nil {
		return err
	}
	if err := o.writeSidecars(); err != nil {
		return err
	}
	return os.Rename(tmp, o.out)
}

// inputs reads the password and the key, or makes them (then the build is
// not reproducible).
func (o *buildOptions) inputs() error {
	var err error
	switch {
	case o.password != "":
	case o.passwordFile != "":
		if o.password, err = readTrimmed(o.passwordFile); err != nil {
			return err
		}
	default:
		if o.password, err = readTrimmed(o.out + ".password"); err != nil {
			o.password = randomPassword()
			o.notReproducible = append(o.notReproducible, "a new random password (give -password-file, or build an instance)")
		}
	}
	if o.certFile == "" && o.keyFile == "" {
		o.certFile, o.keyFile = o.out+".tls.pem", o.out+".tls.key"
		if _, err := os.Stat(o.certFile); errors.Is(err, os.ErrNotExist) {
			cert, key, err := makeKeyPair(o.tlsName())
			if err != nil {
				return err
			}
			o.keys, o.newKey = &keyPair{certPEM: cert, keyPEM: key}, true
			o.notReproducible = append(o.notReproducible, "a new TLS key (give -tls-cert and -tls-key, or build an instance)")
			return nil
		}
	}
	o.keys, err = readKeyPair(o.certFile, o.keyFile)
	return err
}

// tlsName is the name in a new certificate.
func (o *buildOptions) tlsName() string {
	switch {
	case o.hostname != "":
		return o.hostname
	case o.domain != "":
		return "mail." + o.domain
	}
	return "elit"
}

// writeSidecars keeps the version next to the image and, for an image
// built without an instance, its password, certificate (update and db push
// pin its key) and, when the build made it, the key.
func (o *buildOptions) writeSidecars() error {
	type sidecar struct {
		suffix string
		data   []byte
		mode   os.FileMode
	}
	files := []sidecar{{".version", []byte(o.version + "\n"), 0o644}}
	if o.inst == nil {
		files = append(files, sidecar{".password", []byte(o.password + "\n"), 0o600}, sidecar{".tls.pem", o.keys.certPEM, 0o644})
		if o.newKey {
			files = append(files, sidecar{".tls.key", o.keys.keyPEM, 0o600})
		}
	}
	for _, f := range files {
		if err := os.WriteFile(o.out+f.suffix, f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// runMonogok writes the gokrazy image out from the config in dir, and
// returns the build time stamp monogok wrote into gokrazy's init. The Go
// programs are built without symbol tables, build IDs or the paths of the
// build machine, and init's time stamp is set to the source date (-X; the
// literal monogok generated stays behind in the binary: repackRoot
// replaces it).
func runMonogok(ctx context.Context, o *buildOptions, dir, out string, stderr io.Writer) (string, error) {
	// go tool -n builds monogok (or finds it in the build cache) with the
	// environment of the user; it then runs with ours.
	path, err := exec.CommandContext(ctx, "go", "-C", o.src, "tool", "-n", "monogok").Output()
	if err != nil {
		return "", fmt.Errorf("building monogok: %w", err)
	}
	rel, err := filepath.Rel(o.src, filepath.Join(dir, "config.json"))
	if err != nil {
		return "", err
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return "", err
	}
	// The paths of the config and of the image land in the image's SBOM
	// (the image's in the digest of the config): both relative to the
	// source, and the image's through a link to where it goes.
	if err := os.Symlink(abs, filepath.Join(dir, "disk.img")); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, strings.TrimSpace(string(path)), "--config", rel, "overwrite",
		"--full", filepath.Join(filepath.Dir(rel), "disk.img"), "--target_storage_bytes", strconv.FormatInt(o.size, 10))
	cmd.Dir = o.src
	goflags := strings.TrimSpace(os.Getenv("GOFLAGS") + " -trimpath '-ldflags=-s -w -buildid= -X=main.buildTimestamp=" + o.date.Format(time.RFC3339) + "'")
	// TZ=UTC: monogok's time stamp is then as long as ours.
	cmd.Env = append(os.Environ(), "GOFLAGS="+goflags, "TZ=UTC")
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if o.verbose {
		cmd.Stdout, cmd.Stderr = io.MultiWriter(stderr, &buf), io.MultiWriter(stderr, &buf)
	}
	if err := cmd.Run(); err != nil {
		if !o.verbose {
			stderr.Write(buf.Bytes())
		}
		return "", fmt.Errorf("monogok: %w", err)
	}
	m := stampRE.FindSubmatch(buf.Bytes())
	if m == nil {
		return "", fmt.Errorf("monogok did not say its build time stamp:\n%s", buf.Bytes())
	}
	return string(m[1]), nil
}

// stampRE is monogok's log line of the time stamp it builds init with.
var stampRE = regexp.MustCompile(`Build timestamp: (\S+)`)

// lockFile takes an exclusive lock on path (made if need be), waiting for
// it; unlock releases it.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// finishImage adds the database partition to a fresh gokrazy image, formats
// /perm in what is left of partition 4 with the appliance's TLS key in it,
// and writes db into partition 5; every identifier derived from the disk's
// GUID, every time stamp date.
func finishImage(path string, db []byte, dbSize int64, format oneffs.Format, keys *keyPair, date time.Time) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	part, err := gpt.AddAtEnd(f, "oneffs", dbSize)
	if err != nil {
		return fmt.Errorf("adding the database partition: %w", err)
	}
	t, err := gpt.Read(f)
	if err != nil {
		return err
	}
	perm, err := t.Number(4)
	if err != nil || part.Index != 5 {
		return fmt.Errorf("unexpected partition table: /perm is not partition 4 or the database not 5")
	}
	if err := formatPerm(path, t, perm, keys, date); err != nil {
		return err
	}
	im, err := oneffs.New(part.Section(f), part.Size(), oneffs.WithFormat(format), oneffs.WithClock(func() time.Time { return date }))
	if err != nil {
		return err
	}
	if err := im.Format(); err != nil {
		return err
	}
	if err := im.Write(db); err != nil {
		return fmt.Errorf("writing the database: %w", err)
	}
	return f.Sync()
}

// readDB reads a user database from a JSON file or a OneFFS image and checks
// it as elit would (against domain, when given).
func readDB(path, domain string) ([]byte, error) {
	data, err := userdb.ReadSource(path)
	if err != nil {
		return nil, err
	}
	if domain == "" {
		domain = "example.invalid"
	}
	if _, err := userdb.Parse(data, domain); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return data, nil
}

// moduleRoot finds the Elit module around the current directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.HasPrefix(b, []byte("module elit.local\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the Elit source tree; give -src")
		}
		dir = parent
	}
}

func gitVersion(dir string) string {
	out, err := exec.Command("git", "-C", dir, "describe", "--always", "--dirty").Output()
	if v := strings.TrimSpace(string(out)); err == nil && v != "" {
		return v
	}
	return "dev"
}
