package server

import (
	"net"
	"net/textproto"
	"strings"
	"testing"
)

// sunk is a message the sink took.
type sunk struct {
	from string
	to   []string
	data string
}

// startSink is a minimal SMTP server on loopback standing for the
// Internet: it takes every message and sends it on the channel.
func startSink(t *testing.T) (string, <-chan sunk) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	got := make(chan sunk, 10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go sinkSession(textproto.NewConn(c), got)
		}
	}()
	return l.Addr().String(), got
}

func sinkSession(c *textproto.Conn, got chan<- sunk) {
	defer c.Close()
	c.PrintfLine("220 sink.example ESMTP")
	var m sunk
	for {
		line, err := c.ReadLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			c.PrintfLine("250-sink.example\r\n250-8BITMIME\r\n250 SMTPUTF8")
		case "HELO", "NOOP":
			c.PrintfLine("250 sink.example")
		case "MAIL":
			m = sunk{from: addrArg(arg)}
			c.PrintfLine("250 2.1.0 ok")
		case "RCPT":
			m.to = append(m.to, addrArg(arg))
			c.PrintfLine("250 2.1.5 ok")
		case "DATA":
			c.PrintfLine("354 go on")
			data, err := c.ReadDotBytes()
			if err != nil {
				return
			}
			m.data = string(data)
			got <- m
			c.PrintfLine("250 2.0.0 taken")
		case "RSET":
			m = sunk{}
			c.PrintfLine("250 2.0.0 ok")
		case "QUIT":
			c.PrintfLine("221 2.0.0 bye")
			return
		default:
			c.PrintfLine("502 5.5.1 not here")
		}
	}
}

// addrArg is the address of "FROM:<a> PARAMS" or "TO:<a>".
func addrArg(arg string) string {
	_, a, _ := strings.Cut(arg, "<")
	a, _, _ = strings.Cut(a, ">")
	return a
}
