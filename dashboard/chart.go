package dashboard

import (
	"strconv"
	"time"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/rules"
)

// chartBuckets is how many bars the decisions-over-time chart has.
const chartBuckets = 24

// chart is the Traffic page's decisions-over-time chart, drawn on the
// server as SVG: one stacked bar per bucket of the window.
type chart struct {
	Width, Height int
	From, To      string // the window's ends, for the axis
	Max, Total    int
	Bars          []bar
}

// bar is one bucket: its segments bottom up (allow, held, deny).
type bar struct {
	X, W     int
	Title    string
	Segments []segment
}

type segment struct {
	Class string
	Y, H  int
}

// decisionsChart counts the decisions that pass f in chartBuckets equal
// buckets of [from, to).
func decisionsChart(dir string, f audit.Filter, from, to time.Time) (*chart, error) {
	f.Since, f.Until, f.Before = from, to, 0
	span := to.Sub(from)
	if span <= 0 {
		return nil, nil
	}
	type counts struct{ allow, hold, deny int }
	buckets := make([]counts, chartBuckets)
	total := 0
	err := audit.Scan(dir, f, func(r *audit.Record) error {
		i := int(int64(r.Time.Sub(from)) * chartBuckets / int64(span))
		if i < 0 || i >= chartBuckets || r.Decision == nil {
			return nil
		}
		switch r.Decision.Effect {
		case rules.Allow:
			buckets[i].allow++
		case rules.RequireApproval:
			buckets[i].hold++
		default:
			buckets[i].deny++
		}
		total++
		return nil
	})
	if err != nil {
		return nil, err
	}
	c := &chart{Width: 720, Height: 120, From: stamp(from), To: stamp(to), Total: total}
	for _, b := range buckets {
		c.Max = max(c.Max, b.allow+b.hold+b.deny)
	}
	bw := c.Width / chartBuckets
	for i, b := range buckets {
		start := from.Add(span * time.Duration(i) / chartBuckets)
		br := bar{X: i * bw, W: bw - 2, Title: stamp(start) + ": " + countStr(b.allow) + " allowed, " + countStr(b.hold) + " held, " + countStr(b.deny) + " denied"}
		y := c.Height
		for _, s := range []struct {
			class string
			n     int
		}{{"allow", b.allow}, {"require_approval", b.hold}, {"deny", b.deny}} {
			if s.n == 0 || c.Max == 0 {
				continue
			}
			h := max(1, s.n*(c.Height-4)/c.Max)
			y -= h
			br.Segments = append(br.Segments, segment{Class: s.class, Y: y, H: h})
		}
		c.Bars = append(c.Bars, br)
	}
	return c, nil
}

func countStr(n int) string { return strconv.Itoa(n) }
