package tlsrpt

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"slices"
	"strings"
	"time"
)

// Report is an aggregate TLS report (RFC 8460 §4.4), as JSON.
type Report struct {
	OrganizationName string    `json:"organization-name"`
	DateRange        DateRange `json:"date-range"`
	ContactInfo      string    `json:"contact-info"`
	ReportID         string    `json:"report-id"`
	Policies         []Result  `json:"policies"`
}

// DateRange is the period a report covers: a UTC day (§4.1).
type DateRange struct {
	Start time.Time `json:"start-datetime"`
	End   time.Time `json:"end-datetime"`
}

// Result is the sessions under one policy.
type Result struct {
	Policy         Policy          `json:"policy"`
	Summary        Summary         `json:"summary"`
	FailureDetails []FailureDetail `json:"failure-details,omitempty"`
}

// Policy is the policy applied (§4.4).
type Policy struct {
	Type   string   `json:"policy-type"` // PolicySTS, PolicyTLSA, PolicyNotFound
	String []string `json:"policy-string,omitempty"`
	Domain string   `json:"policy-domain"`
	// MXHost are the MX patterns of an MTA-STS policy. The RFC's text
	// and example make it one string; Errata ID 6241 an array, as most
	// senders write it: both are read, the array written.
	MXHost MXHosts `json:"mx-host,omitempty"`
}

// MXHosts reads a JSON string or array of strings (RFC 8460 and its
// Errata ID 6241).
type MXHosts []string

// UnmarshalJSON implements json.Unmarshaler.
func (m *MXHosts) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*m = MXHosts{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("mx-host: want a string or an array of strings")
	}
	*m = many
	return nil
}

// Summary counts the sessions (§4.4).
type Summary struct {
	Successful int64 `json:"total-successful-session-count"`
	Failed     int64 `json:"total-failure-session-count"`
}

// FailureDetail is a kind of failure and how many sessions had it
// (§4.4).
type FailureDetail struct {
	ResultType            string `json:"result-type"`
	SendingMTAIP          string `json:"sending-mta-ip,omitempty"`
	ReceivingMXHostname   string `json:"receiving-mx-hostname,omitempty"`
	ReceivingMXHelo       string `json:"receiving-mx-helo,omitempty"`
	ReceivingIP           string `json:"receiving-ip,omitempty"`
	FailedSessionCount    int64  `json:"failed-session-count"`
	AdditionalInformation string `json:"additional-information,omitempty"`
	FailureReasonCode     string `json:"failure-reason-code,omitempty"`
}

// key is what makes two failure details the same kind of failure.
func (f FailureDetail) key() FailureDetail {
	f.FailedSessionCount = 0
	return f
}

// MaxReportSize bounds a report's JSON, compressed or not (mox takes 20
// MB; a day of one sender's sessions is far less).
const MaxReportSize = 8 << 20

// Parse reads a report's JSON (RFC 8460 §4.4): the fields of the RFC
// with their types, the required ones present; unknown fields are left
// (the registries grow). Dates may lack their time zone (Microsoft
// writes them so): UTC is taken.
func Parse(data []byte) (*Report, error) {
	var raw struct {
		Report
		DateRange *struct {
			Start *jsonTime `json:"start-datetime"`
			End   *jsonTime `json:"end-datetime"`
		} `json:"date-range"`
		Policies []struct {
			Result
			Policy  *Policy  `json:"policy"`
			Summary *Summary `json:"summary"`
		} `json:"policies"`
	}
	if len(data) > MaxReportSize {
		return nil, fmt.Errorf("tls report: over %d bytes", MaxReportSize)
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("tls report: %w", err)
	}
	r := raw.Report
	if raw.DateRange == nil || raw.DateRange.Start == nil || raw.DateRange.End == nil {
		return nil, errors.New("tls report: no date-range")
	}
	r.DateRange = DateRange{time.Time(*raw.DateRange.Start), time.Time(*raw.DateRange.End)}
	if r.DateRange.End.Before(r.DateRange.Start) {
		return nil, errors.New("tls report: the date-range ends before it starts")
	}
	if r.ReportID == "" {
		return nil, errors.New("tls report: no report-id")
	}
	if raw.Policies == nil {
		return nil, errors.New("tls report: no policies")
	}
	r.Policies = nil
	for i, p := range raw.Policies {
		if p.Policy == nil || p.Summary == nil {
			return nil, fmt.Errorf("tls report: policy %d: no policy or summary", i)
		}
		res := Result{Policy: *p.Policy, Summary: *p.Summary, FailureDetails: p.FailureDetails}
		if !slices.Contains([]string{PolicySTS, PolicyTLSA, PolicyNotFound}, res.Policy.Type) {
			return nil, fmt.Errorf("tls report: policy %d: policy-type %q", i, res.Policy.Type)
		}
		if res.Policy.Domain == "" {
			return nil, fmt.Errorf("tls report: policy %d: no policy-domain", i)
		}
		if res.Summary.Successful < 0 || res.Summary.Failed < 0 {
			return nil, fmt.Errorf("tls report: policy %d: negative counts", i)
		}
		for j, f := range res.FailureDetails {
			if f.ResultType == "" || f.FailedSessionCount < 0 {
				return nil, fmt.Errorf("tls report: policy %d, failure %d: no result-type or a negative count", i, j)
			}
		}
		r.Policies = append(r.Policies, res)
	}
	return &r, nil
}

// jsonTime is an RFC 3339 date-time, or one without time zone (UTC).
type jsonTime time.Time

func (t *jsonTime) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("date-time: %w", err)
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999"} {
		if v, err := time.Parse(layout, s); err == nil {
			*t = jsonTime(v.UTC())
			return nil
		}
	}
	return fmt.Errorf("date-time %q is not RFC 3339", s)
}

// Marshal writes the report's JSON.
func (r *Report) Marshal() ([]byte, error) {
	c := *r
	c.DateRange = DateRange{r.DateRange.Start.UTC(), r.DateRange.End.UTC()}
	if c.Policies == nil {
		c.Policies = []Result{}
	}
	return json.Marshal(c)
}

// Gzip compresses a report's JSON, as application/tlsrpt+gzip (§5.3).
func Gzip(data []byte) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write(data)
	w.Close()
	return b.Bytes()
}

// gunzip decompresses at most MaxReportSize bytes.
func gunzip(r io.Reader) ([]byte, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(zr, MaxReportSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxReportSize {
		return nil, fmt.Errorf("over %d bytes uncompressed", MaxReportSize)
	}
	return b, nil
}

// ErrNoReport means a message carries no TLS report.
var ErrNoReport = errors.New("no TLS report in the message")

// IsReportType reports whether a Content-Type is multipart/report with
// report-type=tlsrpt (RFC 8460 §5.3).
func IsReportType(contentType string) bool {
	mt, params, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "multipart/report" && strings.EqualFold(params["report-type"], "tlsrpt")
}

// ParseMessage reads the TLS report that a message carries (RFC 8460
// §5.3): a part application/tlsrpt+gzip or application/tlsrpt+json (a
// gzip file named *.json.gz is taken too), in a multipart/report or
// alone; ErrNoReport when there is none.
func ParseMessage(r io.Reader) (*Report, error) {
	msg, err := mail.ReadMessage(bufio.NewReader(io.LimitReader(r, 4*MaxReportSize)))
	if err != nil {
		return nil, fmt.Errorf("tls report message: %w", err)
	}
	return findReport(textproto.MIMEHeader(msg.Header), msg.Body, 0)
}

// findReport looks for the report in a MIME entity, depth levels down.
func findReport(h textproto.MIMEHeader, body io.Reader, depth int) (*Report, error) {
	ct := h.Get("Content-Type")
	if ct == "" {
		ct = "text/plain"
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return nil, ErrNoReport
	}
	if strings.HasPrefix(mt, "multipart/") {
		if depth >= 4 || params["boundary"] == "" {
			return nil, ErrNoReport
		}
		mr := multipart.NewReader(body, params["boundary"])
		for range 32 {
			p, err := mr.NextRawPart()
			if err != nil {
				return nil, ErrNoReport
			}
			rep, err := findReport(p.Header, p, depth+1)
			if !errors.Is(err, ErrNoReport) {
				return rep, err
			}
		}
		return nil, ErrNoReport
	}
	_, dparams, _ := mime.ParseMediaType(h.Get("Content-Disposition"))
	name := dparams["filename"]
	if name == "" {
		name = params["name"]
	}
	gz := mt == "application/tlsrpt+gzip" || (mt == "application/gzip" || mt == "application/octet-stream") && strings.HasSuffix(strings.ToLower(name), ".json.gz")
	if !gz && mt != "application/tlsrpt+json" {
		return nil, ErrNoReport
	}
	var content io.Reader = body
	switch strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))) {
	case "base64":
		content = base64.NewDecoder(base64.StdEncoding, newlineless{body})
	case "quoted-printable":
		content = quotedprintable.NewReader(body)
	}
	var data []byte
	if gz {
		data, err = gunzip(content)
	} else {
		data, err = io.ReadAll(io.LimitReader(content, MaxReportSize+1))
	}
	if err != nil {
		return nil, fmt.Errorf("tls report: %w", err)
	}
	return Parse(data)
}

// newlineless drops line breaks (and other white space) from base64 text.
type newlineless struct{ r io.Reader }

func (n newlineless) Read(p []byte) (int, error) {
	for {
		k, err := n.r.Read(p)
		j := 0
		for _, c := range p[:k] {
			if c != '\r' && c != '\n' && c != ' ' && c != '\t' {
				p[j] = c
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}
