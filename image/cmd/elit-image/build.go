package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"elit.local/elit/userdb"
	"elit.local/image/gpt"
	"elit.local/oneffs"
)

// elitPackage is the import path of the elit program in the instance configs.
const elitPackage = "elit.local/elit/cmd/elit"

// buildOptions is what elit-image build is told.
type buildOptions struct {
	target, db, domain, hostname, out, password, version, format, src string
	size, dbSize                                                      int64
	elitFlags                                                         multiFlag
	verbose                                                           bool
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

func cmdBuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := buildOptions{size: 2 << 30, dbSize: 16 << 20}
	fs := flag.NewFlagSet("elit-image build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.target, "target", "vm", "`target`: vm (amd64 PC or VM) or rpi (Raspberry Pi 3/4/5/Zero 2 W, arm64); hello is the baseline of make bench")
	fs.StringVar(&o.db, "db", "", "user database: a JSON `file` or a OneFFS image (required)")
	fs.StringVar(&o.domain, "domain", "", "the mail `domain` (without it, elit on the appliance stays stopped: exit 125, unconfigured)")
	fs.StringVar(&o.hostname, "hostname", "", "the MX and submission host `name` (default mail.DOMAIN)")
	fs.StringVar(&o.out, "o", "", "output image `file` (required); its password goes to FILE.password")
	fs.StringVar(&o.password, "password", "", "the appliance's web and update `password` (default: FILE.password if it exists, else a new random one)")
	fs.StringVar(&o.version, "version", "", "version `string` of elit in the image (default: git describe of the source); the build time is added, and the whole goes to FILE.version")
	fs.StringVar(&o.format, "format", "fail-safe", "OneFFS `format` of the database partition: fail-safe or classic")
	fs.StringVar(&o.src, "src", "", "the Elit source `directory` (default: the module around the current directory)")
	fs.Var(sizeFlag{&o.size}, "size", "image `size` (at least 1300M; the disk it goes to can be larger)")
	fs.Var(sizeFlag{&o.dbSize}, "db-size", "`size` of the database partition")
	fs.Var(&o.elitFlags, "elit-flag", "one more command-line `flag` for elit serve, e.g. -elit-flag=-smarthost=10.0.2.100:25 (repeatable)")
	fs.BoolVar(&o.verbose, "v", false, "show monogok's output")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if o.db == "" || o.out == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: elit-image build -target vm|rpi -db db.json|db.img -domain DOMAIN [flags] -o elit.img")
		return errUsage
	}
	start := time.Now()
	if err := build(ctx, &o, stderr); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "built %s (%s, elit %s) in %.1fs; password in %s\n", o.out, o.target, o.version, time.Since(start).Seconds(), o.out+".password")
	return nil
}

// build makes the image: monogok writes the gokrazy partitions, partition 5
// "oneffs" is cut from the end of /perm, /perm is formatted, and the database
// is written into partition 5.
func build(ctx context.Context, o *buildOptions, stderr io.Writer) error {
	format, err := oneffs.ParseFormat(o.format)
	if err != nil {
		return err
	}
	if o.target != "vm" && o.target != "rpi" && o.target != "hello" {
		return fmt.Errorf("-target %q: want vm or rpi", o.target)
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
	if o.password == "" {
		if o.password, err = readTrimmed(o.out + ".password"); err != nil {
			o.password = randomPassword()
		}
	}
	if o.version == "" {
		o.version = gitVersion(o.src)
	}
	// The build time makes every build's version distinct: update tells
	// the new system from the old by it.
	o.version += "+" + time.Now().UTC().Format("20060102T150405")

	dir, err := os.MkdirTemp(filepath.Join(o.src, "appliance", o.target), ".build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfgPath := filepath.Join(dir, "config.json")
	if err := writeInstanceConfig(filepath.Join(o.src, "appliance", o.target, "config.json"), cfgPath, o); err != nil {
		return err
	}

	tmp := o.out + ".tmp"
	os.Remove(tmp)
	defer os.Remove(tmp)
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", "tool", "monogok", "--config", cfgPath, "overwrite",
		"--full", tmp, "--target_storage_bytes", strconv.FormatInt(o.size, 10))
	cmd.Dir = o.src
	// monogok keeps a per-hostname password file in the user's configuration
	// directory when the config has none; ours always has one.
	cmd.Stdout, cmd.Stderr = &out, &out
	if o.verbose {
		cmd.Stdout, cmd.Stderr = stderr, stderr
	}
	if err := cmd.Run(); err != nil {
		stderr.Write(out.Bytes())
		return fmt.Errorf("monogok: %w", err)
	}
	if err := finishImage(tmp, db, o.dbSize, format); err != nil {
		return err
	}
	if err := os.WriteFile(o.out+".password", []byte(o.password+"\n"), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(o.out+".version", []byte(o.version+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, o.out)
}

// finishImage adds the database partition to a fresh gokrazy image, formats
// /perm in what is left of partition 4, and writes db into partition 5.
func finishImage(path string, db []byte, dbSize int64, format oneffs.Format) error {
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
	// gokrazy mounts partition 4 as /perm but formats nothing in an image
	// file (docs: "Could not mount permanent storage partition").
	mkfs := exec.Command("mkfs.ext4", "-q", "-F", "-L", "perm", "-E", "offset="+strconv.FormatInt(perm.Offset(), 10),
		path, strconv.FormatInt(perm.Size()/1024, 10)+"k")
	if out, err := mkfs.CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4 for /perm: %v: %s", err, out)
	}
	im, err := oneffs.New(part.Section(f), part.Size(), oneffs.WithFormat(format))
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

// writeInstanceConfig writes the gokrazy instance config of one build: the
// committed one plus the password, the version and elit's flags.
func writeInstanceConfig(from, to string, o *buildOptions) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	var cfg map[string]any
	if err := json.Unmarshal(data, &cfg); err != nil {
		return fmt.Errorf("%s: %w", from, err)
	}
	cfg["Update"] = map[string]any{"HTTPPassword": o.password}
	pcs, _ := cfg["PackageConfig"].(map[string]any)
	if pcs == nil {
		pcs = map[string]any{}
		cfg["PackageConfig"] = pcs
	}
	if pkgs, _ := cfg["Packages"].([]any); !slices.Contains(pkgs, any(elitPackage)) {
		return writeJSON(to, cfg) // no elit in it (the hello baseline)
	}
	pc, _ := pcs[elitPackage].(map[string]any)
	if pc == nil {
		pc = map[string]any{}
		pcs[elitPackage] = pc
	}
	var flags []any
	if fl, ok := pc["CommandLineFlags"].([]any); ok {
		flags = fl
	}
	if o.domain != "" {
		flags = append(flags, "-domain="+o.domain)
	}
	if o.hostname != "" {
		flags = append(flags, "-hostname="+o.hostname)
	}
	for _, f := range o.elitFlags {
		flags = append(flags, f)
	}
	pc["CommandLineFlags"] = flags
	pc["GoBuildFlags"] = []any{"-ldflags=-X main.version=" + o.version}
	return writeJSON(to, cfg)
}

func writeJSON(path string, v any) error {
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o600)
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

// randomPassword is 20 characters from an alphabet without look-alikes.
func randomPassword() string {
	const alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := make([]byte, 20)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func readTrimmed(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}
