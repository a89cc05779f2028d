package status

// trafficView is the traffic section: the chart of the last hours and
// the recent mail log.
type trafficView struct {
	Hours  int
	Totals string
	Chart  string // the chart as a data: URL (an SVG drawn here)
	Filter string
	Lines  []logLine
}

// logLine is one line of the mail log.
type logLine struct {
	Level, Text string
}
