package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"elit.local/elit/userdb"
)

// deviceFlags are how the commands that talk to a running appliance find it.
type deviceFlags struct {
	host, password, passwordFile string
}

func (d *deviceFlags) register(fs *flag.FlagSet, defaultPort string) {
	fs.StringVar(&d.host, "host", "", "the appliance, `host[:port]` (default port "+defaultPort+")")
	fs.StringVar(&d.password, "password", "", "the appliance's `password` (default: read from -password-file)")
	fs.StringVar(&d.passwordFile, "password-file", "", "`file` holding the password (default: IMAGE.password)")
}

func (d *deviceFlags) resolve(image, defaultPort string) error {
	if d.host == "" {
		return fmt.Errorf("-host is required")
	}
	if !strings.Contains(d.host, ":") || strings.HasSuffix(d.host, "]") {
		d.host += ":" + defaultPort
	}
	if d.password != "" {
		return nil
	}
	f := d.passwordFile
	if f == "" {
		f = image + ".password"
	}
	pw, err := readTrimmed(f)
	if err != nil {
		return fmt.Errorf("no -password and %w", err)
	}
	d.password = pw
	return nil
}

func cmdDBPush(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var d deviceFlags
	fs := flag.NewFlagSet("elit-image db push", flag.ContinueOnError)
	fs.SetOutput(stderr)
	d.register(fs, "8025")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() != 1 || d.host == "" {
		fmt.Fprintln(stderr, "usage: elit-image db push -host H[:port] [-password P | -password-file F] db.json|db.img")
		return errUsage
	}
	if d.password == "" && d.passwordFile == "" {
		return fmt.Errorf("give -password or -password-file (the image's is in IMAGE.password)")
	}
	if err := d.resolve("", "8025"); err != nil {
		return err
	}
	data, err := userdb.ReadSource(fs.Arg(0))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	dev := &device{status: "http://" + d.host, password: d.password}
	body, err := dev.do(ctx, http.MethodPut, dev.status+"/db", bytes.NewReader(data), int64(len(data)), map[string]string{"Content-Type": "application/json"})
	if err != nil {
		return err
	}
	io.WriteString(stdout, body)
	return nil
}
