package smtpclient

import (
	"bufio"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"elit.local/elit/reply"
)

func TestReadReply(t *testing.T) {
	for _, c := range []struct {
		in    string
		code  int
		enh   reply.Enhanced
		text  string
		lines int
		bad   bool
	}{
		{in: "250 ok\r\n", code: 250, text: "ok", lines: 1},
		{in: "250\r\n", code: 250, text: "", lines: 1},
		{in: "250 ok\n", code: 250, text: "ok", lines: 1}, // a bare LF, as some servers send
		{in: "250-mx.example.com\r\n250-PIPELINING\r\n250 SIZE 100\r\n", code: 250, text: "mx.example.com PIPELINING SIZE 100", lines: 3},
		{in: "550 5.1.1 <a@example.com>: no such user\r\n", code: 550, enh: reply.Enhanced{5, 1, 1}, text: "<a@example.com>: no such user", lines: 1},
		{in: "550-5.7.1 one\r\n550-5.7.1 two\r\n550 5.7.1 three\r\n", code: 550, enh: reply.Enhanced{5, 7, 1}, text: "one two three", lines: 3},
		{in: "550-5.7.1 one\r\n550 two\r\n", code: 550, enh: reply.Enhanced{5, 7, 1}, text: "one two", lines: 2},
		{in: "550 4.1.1 another class\r\n", code: 550, text: "4.1.1 another class", lines: 1},
		{in: "451 4.7.0\r\n", code: 451, enh: reply.Enhanced{4, 7, 0}, text: "", lines: 1},
		{in: "250 2.0.0.0 not one\r\n", code: 250, text: "2.0.0.0 not one", lines: 1},
		{in: "421 bye\x00\x1b[31m  red\tnow\r\n", code: 421, text: "bye [31m red now", lines: 1},
		{in: "250 caf\xe9\r\n", code: 250, text: "caf", lines: 1},
		{in: "250-one\r\n251 two\r\n", bad: true},
		{in: "250-one\r\n", bad: true},
		{in: "25\r\n", bad: true},
		{in: "2500 ok\r\n", bad: true},
		{in: "199 no\r\n", bad: true},
		{in: "600 no\r\n", bad: true},
		{in: "+50 no\r\n", bad: true},
		{in: "250_ok\r\n", bad: true},
		{in: "250 " + strings.Repeat("x", maxReplyLine) + "\r\n", bad: true},
		{in: strings.Repeat("250-x\r\n", maxReplyLines+1) + "250 x\r\n", bad: true},
		{in: "", bad: true},
	} {
		r, lines, err := readReply(bufio.NewReader(strings.NewReader(c.in)))
		if c.bad {
			if err == nil {
				t.Errorf("%q: %+v, want an error", c.in, r)
			}
			continue
		}
		if err != nil || r.Code != c.code || r.Enhanced != c.enh || r.Text != c.text || len(lines) != c.lines {
			t.Errorf("%q: %+v %d lines %v; want %d %v %q, %d lines", c.in, r, len(lines), err, c.code, c.enh, c.text, c.lines)
		}
	}
}

// FuzzReadReply: whatever a server sends, readReply returns a reply
// within the rules (a code from 200 to 599, an enhanced code of its
// class or none, a text on one printable line) or an error, and never
// reads past the limits.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{
		"250 ok\r\n",
		"220 mx.example.com ESMTP\r\n",
		"250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 CHUNKING\r\n",
		"550-5.7.1 [192.0.2.1] blocked\r\n550-5.7.1 see\r\n550 5.7.1 https://example.com\r\n",
		"550 5.1.1\r\n",
		"550 4.1.1 wrong class\r\n",
		"250 2.0.0.0 four parts\r\n",
		"451 4.7.0 \x00\x1b[31mcontrol\x7f\r\n",
		"250 \xff\xfe invalid UTF-8\r\n",
		"250 ok\n",
		"250-a\n250 b\r\n",
		"250-one\r\n251 two\r\n",
		"250-unfinished\r\n",
		"334 \r\n",
		"334 VXNlcm5hbWU6\r\n",
		"25\r\n",
		"2500\r\n",
		"099 no\r\n",
		"-50 x\r\n",
		"250",
		"\r\n",
		"250 " + strings.Repeat("x", 5000) + "\r\n",
		"250\r\r\n",
		"250 a\rb\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, lines, err := readReply(bufio.NewReaderSize(strings.NewReader(string(data)), 16))
		if err != nil {
			if r != nil || lines != nil {
				t.Errorf("an error and a reply: %v %+v", err, r)
			}
			if errors.Is(err, errMalformed) && len(data) == 0 {
				t.Error("no data, but malformed rather than EOF")
			}
			return
		}
		if r.Code < 200 || r.Code > 599 {
			t.Errorf("code %d", r.Code)
		}
		if r.Enhanced != (reply.Enhanced{}) && r.Enhanced[0] != r.Code/100 {
			t.Errorf("enhanced code %v in a %d reply", r.Enhanced, r.Code)
		}
		if len(lines) == 0 || len(lines) > maxReplyLines {
			t.Errorf("%d lines", len(lines))
		}
		if !utf8.ValidString(r.Text) || strings.TrimSpace(r.Text) != r.Text {
			t.Errorf("text %q", r.Text)
		}
		for _, c := range r.Text {
			if c < 0x20 || c == 0x7f {
				t.Errorf("control character in %q", r.Text)
			}
		}
		if len(r.Text) > len(data) {
			t.Errorf("text %d bytes from %d read", len(r.Text), len(data))
		}
	})
}
