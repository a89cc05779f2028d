package deliver

import (
	"errors"
	"fmt"

	"elit.local/elit/queue"
	"elit.local/elit/reply"
	"elit.local/elit/smtpclient"
)

// result is the outcome of one recipient's attempt: what the queue keeps
// (queue.Result), and what the log says besides.
type result struct {
	queue.Result
	delivered bool
	relayed   bool // delivered to a server without DSN, NOTIFY=SUCCESS asked
	tls       TLSMode
	transport string
}

// failure is a failure of ours, with no reply from a server: enhanced
// (RFC 3463) says its class, 5 permanent and 4 temporary.
func failure(enhanced string, format string, args ...any) result {
	return result{Result: queue.Result{Enhanced: enhanced, Text: fmt.Sprintf(format, args...),
		Permanent: enhanced != "" && enhanced[0] == '5'}}
}

// at notes where a result comes from: the server (host, and the address
// dialled) and the step of the session.
func (r result) at(host, addr string, step smtpclient.Step) result {
	r.RemoteMTA, r.RemoteAddr, r.Step = host, addr, string(step)
	return r
}

// sessionResult is the result of a step of a session that failed: the
// server's reply, or a temporary failure when the session broke.
func sessionResult(host, addr string, err error) result {
	var e *smtpclient.Error
	if !errors.As(err, &e) {
		return failure("4.4.2", "%s: %v", host, err).at(host, addr, "")
	}
	if e.Reply == nil {
		return failure("4.4.2", "%s at %s: %v", host, e.Step, e.Err).at(host, addr, e.Step)
	}
	return replyResult(e.Reply).at(host, addr, e.Step)
}

// replyResult is a server's reply as a result: a failure unless 2xx.
func replyResult(rp *reply.Reply) result {
	return result{
		Result:    queue.Result{Code: rp.Code, Enhanced: rp.Enhanced.String(), Text: rp.Text, Permanent: rp.Permanent()},
		delivered: rp.Code/100 == 2,
	}
}

// fromServer reports whether r holds a server's reply.
func fromServer(r queue.Result) bool { return r.Code != 0 }

// replyText is the server's reply as it wrote it: "550 5.1.1 text".
func replyText(r queue.Result) string {
	rp := reply.Reply{Code: r.Code, Text: r.Text}
	rp.Enhanced, _ = reply.ParseEnhanced(r.Enhanced)
	return rp.Error()
}

// summary is the result in one line for people (LastError): "5.1.1
// mx.example.com said at RCPT: 550 no such user" for a reply, "4.4.1
// connecting to ..." for a failure of ours.
func (r result) summary() string {
	if !fromServer(r.Result) {
		return r.Enhanced + " " + r.Text
	}
	ec := ""
	if r.Enhanced != "" {
		ec = r.Enhanced + " "
	}
	return fmt.Sprintf("%s%s said at %s: %d %s", ec, r.RemoteMTA, r.Step, r.Code, r.Text)
}
