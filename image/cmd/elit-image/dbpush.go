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
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+d.host+"/db", bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.SetBasicAuth("gokrazy", d.password)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s\n%s", d.host, resp.Status, bytes.TrimSpace(body))
	}
	stdout.Write(body)
	return nil
}
