package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"elit.local/elit/userdb"
)

func cmdDBPush(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var d deviceFlags
	var ep endpoints
	fs := flag.NewFlagSet("elit-image db push", flag.ContinueOnError)
	fs.SetOutput(stderr)
	d.register(fs, "8025")
	image := fs.String("image", "", "the `image` the appliance was built from: its password and key (IMAGE.password, IMAGE.tls.pem)")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	var db string
	switch {
	case fs.NArg() == 1:
		db = fs.Arg(0)
	case fs.NArg() == 0 && d.instance != "":
		in, err := loadInstance(d.instance)
		if err != nil {
			return err
		}
		db = in.path(in.DB)
	default:
		fmt.Fprintln(stderr, "usage: elit-image db push -i NAME [db.json|db.img] | -host H[:port] [-password P | -password-file F] [-pin P | -cert F | -image IMAGE] db.json|db.img")
		return errUsage
	}
	if d.host != "" {
		// The port is elit's status page's.
		ep.status = d.host
		if _, _, err := net.SplitHostPort(d.host); err != nil {
			ep.status = net.JoinHostPort(strings.Trim(d.host, "[]"), strconv.Itoa(statusPort))
		}
	}
	dev, err := d.resolve(fs, *image, &ep)
	if err != nil {
		return err
	}
	data, err := userdb.ReadSource(db)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	body, err := dev.do(ctx, http.MethodPut, dev.status+"/db", bytes.NewReader(data), int64(len(data)), map[string]string{"Content-Type": "application/json"})
	if err != nil {
		return err
	}
	io.WriteString(stdout, body)
	return nil
}
