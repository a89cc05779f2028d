// Command benchdns serves a zone on loopback for the benchmarks (make
// bench), which run in a network namespace with no resolver: the checks of
// received mail (SPF, DKIM, DMARC) and delivery ask it.
//
//	benchdns -addr 127.0.0.1:5300 < zone
//
// The zone is records in zone-file form, one a line, owner names absolute.
package main

import (
	"bufio"
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"

	"elit.local/elit/dns/dnstest"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:5300", "listen `address` (UDP and TCP)")
	flag.Parse()
	var zone dnstest.Zone
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		zone.Records = append(zone.Records, sc.Text())
	}
	h, err := dnstest.Handler(zone)
	if err != nil {
		log.Fatal(err)
	}
	if _, _, err := dnstest.Listen(*addr, h); err != nil {
		log.Fatal(err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
