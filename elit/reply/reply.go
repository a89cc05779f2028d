// Package reply is an SMTP reply as Elit's parts pass it to each other: a
// refusal from a policy step, a delivery result from a remote server. It
// carries the reply code (RFC 5321 §4.2), the enhanced status code (RFC
// 3463) and the text, and says whether it is permanent, instead of an
// (error, bool) pair.
package reply

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Enhanced is an enhanced status code, class.subject.detail (RFC 3463
// §2); the zero value is none.
type Enhanced [3]int

// String is "5.1.1", or "" for none.
func (e Enhanced) String() string {
	if e == (Enhanced{}) {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d", e[0], e[1], e[2])
}

// ParseEnhanced reads "5.1.1" (RFC 3463 §2: class 2, 4 or 5, subject and
// detail of 1 to 3 digits).
func ParseEnhanced(s string) (Enhanced, bool) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] != "2" && parts[0] != "4" && parts[0] != "5" {
		return Enhanced{}, false
	}
	var e Enhanced
	for i, p := range parts {
		if len(p) == 0 || len(p) > 3 {
			return Enhanced{}, false
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || p[0] == '+' {
			return Enhanced{}, false
		}
		e[i] = n
	}
	return e, true
}

// Reply is an SMTP reply. As an error it is one that is not a success.
type Reply struct {
	Code     int      // 250, 451, 550 (RFC 5321 §4.2.3)
	Enhanced Enhanced // 5.1.1 (RFC 3463); zero when there is none
	Text     string   // one line
}

// New returns a reply with its text made by fmt.Sprintf.
func New(code int, enhanced Enhanced, format string, args ...any) *Reply {
	return &Reply{Code: code, Enhanced: enhanced, Text: fmt.Sprintf(format, args...)}
}

// Error is the reply as a server would write it: "550 5.1.1 text".
func (r *Reply) Error() string {
	if r.Enhanced == (Enhanced{}) {
		return fmt.Sprintf("%d %s", r.Code, r.Text)
	}
	return fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Text)
}

// Permanent reports a 5xx reply: trying again will not help (RFC 5321
// §4.2.1).
func (r *Reply) Permanent() bool { return r.Code >= 500 }

// Temporary reports a 4xx reply.
func (r *Reply) Temporary() bool { return r.Code >= 400 && r.Code < 500 }

// As returns the *Reply in err's chain, if any.
func As(err error) (*Reply, bool) {
	var r *Reply
	ok := errors.As(err, &r)
	return r, ok
}
