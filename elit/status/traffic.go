package status

import (
	"fmt"
	"net/http"
	"strings"

	"elit.local/elit/metrics"
)

// maxLogLines bounds the mail log lines the page shows.
const maxLogLines = 300

// trafficView is the traffic section: the chart of the last hours and
// the recent mail log.
type trafficView struct {
	Hours  int
	Totals string
	Chart  string // the chart's address (an SVG drawn here)
	Filter string
	Lines  []logLine
}

// logLine is one line of the mail log.
type logLine struct {
	Level, Text string
}

func (s *Server) traffic(filter string) *trafficView {
	if s.Traffic == nil && s.MailLog == nil {
		return nil
	}
	v := &trafficView{Hours: metrics.TrafficHours, Chart: "/traffic.svg", Filter: filter}
	if s.Traffic != nil {
		var sum metrics.Hour
		for _, h := range s.Traffic.Hours() {
			sum.Received += h.Received
			sum.Delivered += h.Delivered
			sum.Deferred += h.Deferred
			sum.Bounced += h.Bounced
		}
		v.Totals = fmt.Sprintf("%d received, %d delivered, %d deferred, %d bounced", sum.Received, sum.Delivered, sum.Deferred, sum.Bounced)
	}
	if s.MailLog != nil {
		for _, l := range s.MailLog.Lines(filter, maxLogLines) {
			v.Lines = append(v.Lines, logLine{Level: l.Level.String(), Text: l.Time.UTC().Format("01-02 15:04:05") + " " + l.Text})
		}
	}
	return v
}

// The chart's size and series (the colours are the style sheet's).
const (
	chartW, chartH         = 960, 220
	chartLeft, chartBottom = 44, 24
	chartTop, chartRight   = 10, 10
)

var series = []struct {
	name, color string
	get         func(metrics.Hour) uint64
}{
	{"received", "#2357a5", func(h metrics.Hour) uint64 { return h.Received }},
	{"delivered", "#17703a", func(h metrics.Hour) uint64 { return h.Delivered }},
	{"deferred", "#d08a00", func(h metrics.Hour) uint64 { return h.Deferred }},
	{"bounced", "#b3261e", func(h metrics.Hour) uint64 { return h.Bounced }},
}

// trafficSVG draws the chart of the last hours, GET /traffic.svg: one
// line a series, the hours along, a scale of round numbers up. Only
// presentation attributes, no style or script (the page's
// Content-Security-Policy holds for it too).
func (s *Server) trafficSVG(w http.ResponseWriter, r *http.Request) {
	if s.Traffic == nil {
		http.NotFound(w, r)
		return
	}
	hours := s.Traffic.Hours()
	top := uint64(0)
	for _, h := range hours {
		for _, se := range series {
			top = max(top, se.get(h))
		}
	}
	scale := niceCeil(top)
	plotW, plotH := float64(chartW-chartLeft-chartRight), float64(chartH-chartTop-chartBottom)
	x := func(i int) float64 { return chartLeft + plotW*float64(i)/float64(max(1, len(hours)-1)) }
	y := func(v uint64) float64 { return chartTop + plotH - plotH*float64(v)/float64(scale) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`, chartW, chartH, chartW, chartH)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`, chartW, chartH)
	for i := 0; i <= 4; i++ {
		v := scale * uint64(i) / 4
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#dde1e6"/>`, chartLeft, chartW-chartRight, y(v), y(v))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" fill="#5b6673">%d</text>`, chartLeft-6, y(v)+4, v)
	}
	for i, h := range hours {
		if h.Start.Hour()%6 == 0 {
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#eef1f4"/>`, x(i), x(i), chartTop, chartH-chartBottom)
			label := h.Start.Format("15h")
			if h.Start.Hour() == 0 {
				label = h.Start.Format("Jan 2")
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#5b6673">%s</text>`, x(i), chartH-6, label)
		}
	}
	for _, se := range series {
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" stroke-linejoin="round" points="`, se.color)
		for i, h := range hours {
			fmt.Fprintf(&b, "%.1f,%.1f ", x(i), y(se.get(h)))
		}
		b.WriteString(`"><title>` + se.name + `</title></polyline>`)
	}
	b.WriteString(`</svg>`)
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Write([]byte(b.String()))
}

// niceCeil is the top of the scale for n: four steps of 1, 2 or 5 times
// a power of ten, the smallest that reaches n.
func niceCeil(n uint64) uint64 {
	for p := uint64(1); ; p *= 10 {
		for _, m := range []uint64{1, 2, 5} {
			if 4*m*p >= n {
				return 4 * m * p
			}
		}
	}
}
