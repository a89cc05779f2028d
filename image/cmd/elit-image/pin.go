package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// cmdPin learns the TLS key of a running appliance on first contact: it
// shows the key and its certificate, and once the user has compared it
// with what the appliance says (its status page, or the key printed by
// elit-image new), pins it for the instance, or prints the -pin flag.
func cmdPin(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("elit-image pin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("i", "", "the instance `name`: its host and status port, and where the pin is kept")
	host := fs.String("host", "", "the appliance's status page or update endpoint, `host:port` (default port 8025)")
	yes := fs.Bool("y", false, "pin without asking")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	var in *instance
	addr := *host
	switch {
	case *name != "" && *host == "":
		var err error
		if in, err = loadInstance(*name); err != nil {
			return err
		}
		if in.Host == "" {
			return fmt.Errorf("instance %s: no host in its %s", in.Name, instanceFile)
		}
		addr = in.addr(in.StatusPort, statusPort)
	case *name == "" && *host != "":
		if _, _, err := net.SplitHostPort(addr); err != nil {
			addr = net.JoinHostPort(strings.Trim(addr, "[]"), strconv.Itoa(statusPort))
		}
	default:
		fmt.Fprintln(stderr, "usage: elit-image pin -i NAME | -host H[:port] [-y]")
		return errUsage
	}
	cert, err := peerCertificate(ctx, addr)
	if err != nil {
		return err
	}
	pin := spkiPin(cert)
	fmt.Fprintf(stdout, "%s shows a certificate for %s (issued by %s, valid until %s)\nits key: %s\n",
		addr, strings.Join(cert.DNSNames, " "), cert.Issuer, cert.NotAfter.Format("2006-01-02"), pin)
	if in != nil {
		if pins, err := in.pins(); err == nil && slices.Contains(pins, pin) {
			fmt.Fprintf(stdout, "instance %s already pins it\n", in.Name)
			return nil
		}
	}
	if !*yes && !confirm(stdin, stdout, "Is that the appliance's key (compare it with its status page or its serial console)? Pin it?") {
		return errors.New("not pinned")
	}
	if in == nil {
		fmt.Fprintf(stdout, "give elit-image update and db push: -pin %s\n", pin)
		return nil
	}
	if err := in.addPin(pin); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "pinned for instance %s (%s)\n", in.Name, in.file(pinsFile))
	return nil
}

// peerCertificate is the certificate addr shows in a TLS handshake (not
// verified: this is the first contact; nothing else is sent).
func peerCertificate(ctx context.Context, addr string) (*x509.Certificate, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: &tls.Config{InsecureSkipVerify: true}}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	certs := c.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s shows no certificate", addr)
	}
	return certs[0], nil
}
