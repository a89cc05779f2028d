// Command hello is the smallest gokrazy program that greets like an SMTP
// server: the baseline that the appliance's image size, boot and update
// times are compared with (make bench).
package main

import (
	"fmt"
	"log"
	"net"
)

func main() {
	l, err := net.Listen("tcp", ":25")
	if err != nil {
		log.Fatal(err)
	}
	for {
		c, err := l.Accept()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Fprintf(c, "220 hello ESMTP\r\n")
		c.Close()
	}
}
