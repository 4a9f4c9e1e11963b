package dashboard

import (
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/rules"
)

// initialRows is how many rows the Traffic page starts with.
const initialRows = 200

// row is one line of the Traffic table; its JSON form feeds the live
// stream, so both render the same fields.
type row struct {
	Seq       uint64 `json:"seq"`
	Time      string `json:"time"`
	Stamp     string `json:"stamp"`
	Label     string `json:"label"`
	Class     string `json:"class"` // allow, deny, require_approval, would
	Rule      string `json:"rule"`
	Gateway   string `json:"gateway"`
	Action    string `json:"action"`
	Target    string `json:"target"`
	RequestID string `json:"request_id"`
	Status    string `json:"status"`
	Latency   string `json:"latency"`
	// Tokens is a model call's usage, as tf logs shows it: "in 10 out 5".
	Tokens string `json:"tokens"`
}

// outcome is a live update of a row: the request finished.
type outcome struct {
	RequestID string `json:"request_id"`
	Status    string `json:"status"`
	Latency   string `json:"latency"`
	Tokens    string `json:"tokens"`
}

func makeRow(r *audit.Record, o *audit.Record) row {
	out := row{Seq: r.Seq, Time: clock(r.Time), Stamp: stamp(r.Time),
		Label: r.Label(), Gateway: r.Gateway, Target: r.Target(), RequestID: r.RequestID}
	if r.Action != nil {
		out.Action = r.Action.Type
	}
	if d := r.Decision; d != nil {
		out.Class = string(d.Effect)
		out.Rule = d.Rule
		switch {
		case d.Monitor && d.Would != "" && d.Would != d.Effect:
			out.Class, out.Rule = "would", d.WouldRule
		case d.KillSwitch:
			out.Rule = "(kill switch)"
		case d.Default && d.Rule == "":
			out.Rule = "(default)"
		}
	}
	if o != nil {
		oc := outcomeOf(o)
		out.Status, out.Latency, out.Tokens = oc.Status, oc.Latency, oc.Tokens
	}
	return out
}

func outcomeOf(o *audit.Record) outcome {
	oc := outcome{RequestID: o.RequestID, Status: audit.Row{Outcome: o}.Status(), Tokens: audit.Row{Outcome: o}.Tokens()}
	if o.Status != 0 || o.Error != "" || o.DurationMS != 0 {
		oc.Latency = strconv.FormatInt(o.DurationMS, 10) + " ms"
	}
	return oc
}

type trafficData struct {
	Filter trafficFilter
	Rows   []row
	// After is the last seq the page holds: the live stream starts there.
	After uint64
	// Effects lists the decisions the filter offers.
	Effects []rules.Effect
	// Ranges lists the window presets the filter offers.
	Ranges []string
	// Older is the query of the next page of older rows, when there may
	// be one.
	Older string
	// Chart counts the decisions of the window (the last 24 hours when
	// the filter sets none).
	Chart *chart
}

func (s *Server) handleTraffic(w http.ResponseWriter, r *http.Request, sess *session) {
	now := time.Now().UTC()
	tf, f, err := parseFilter(r.URL.Query(), now)
	data := trafficData{Filter: tf, Effects: []rules.Effect{rules.Allow, rules.Deny, rules.RequireApproval}, Ranges: []string{"1h", "24h", "7d"}}
	if err != nil {
		v := s.page(sess, "Traffic", "traffic", data)
		v.Error = err.Error()
		s.render(w, http.StatusBadRequest, "traffic", v)
		return
	}
	dir := audit.Dir(s.cfg.Home)
	// The end is read first: rows the scan sees past it are left to the
	// stream, which starts there, so none shows twice or goes missing.
	after, err := audit.End(dir)
	if err == nil {
		err = audit.Rows(dir, f, initialRows, func(w audit.Row) error {
			if w.Decision.Seq <= after {
				data.Rows = append(data.Rows, makeRow(w.Decision, w.Outcome))
			}
			return nil
		})
	}
	data.After = after
	slices.Reverse(data.Rows)
	if len(data.Rows) == initialRows {
		data.Older = tf.Older(data.Rows[len(data.Rows)-1].Seq)
	}
	if err == nil {
		from, to := f.Since, f.Until
		if to.IsZero() {
			to = now
		}
		if from.IsZero() {
			from = to.Add(-24 * time.Hour)
		}
		data.Chart, err = decisionsChart(dir, f, from, to)
	}
	v := s.page(sess, "Traffic", "traffic", data)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		v.Error = "reading the audit log: " + err.Error()
	}
	s.render(w, http.StatusOK, "traffic", v)
}

// handleTrafficEvents streams new decisions that pass the filter, and the
// outcomes of requests, as server-sent events.
func (s *Server) handleTrafficEvents(w http.ResponseWriter, r *http.Request, _ *session) {
	_, f, err := parseFilter(r.URL.Query(), time.Now().UTC())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	after, err := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
	if err != nil {
		http.Error(w, "after: want the seq of the last record shown", http.StatusBadRequest)
		return
	}
	// A reconnecting EventSource resumes after the last event it saw.
	if id, err := strconv.ParseUint(r.Header.Get("Last-Event-ID"), 10, 64); err == nil && id > after {
		after = id
	}
	out, err := newSSE(w)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	// Outcomes carry no action, so the stream reads every record of the
	// gateway and applies the rest of the filter to decisions itself.
	// Every outcome is sent: the page updates the rows it holds and
	// ignores the rest.
	wide := audit.Filter{Gateway: f.Gateway}
	err = audit.Follow(r.Context(), audit.Dir(s.cfg.Home), wide, after, func(rec *audit.Record) error {
		id := strconv.FormatUint(rec.Seq, 10)
		switch {
		case rec.Kind == audit.KindDecision && f.Match(rec):
			b, err := json.Marshal(makeRow(rec, nil))
			if err != nil {
				return err
			}
			return out.send("row", id, string(b))
		case rec.Kind == audit.KindOutcome:
			b, err := json.Marshal(outcomeOf(rec))
			if err != nil {
				return err
			}
			return out.send("outcome", id, string(b))
		}
		return nil
	})
	if err != nil {
		_ = out.send("failure", "", "the audit log cannot be followed: "+err.Error())
	}
}

type recordData struct {
	Decision *audit.Record
	Outcome  *audit.Record
	Label    string
	Target   string
	Params   string
	Resource [][2]string
}

// errFound stops a scan early.
var errFound = errors.New("found")

// outcomeWindow is how many records past a decision its outcome is looked
// for.
const outcomeWindow = 100000

func (s *Server) handleRecord(w http.ResponseWriter, r *http.Request, sess *session) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil || seq == 0 {
		http.Error(w, "record: want a positive sequence number", http.StatusBadRequest)
		return
	}
	var d recordData
	left := outcomeWindow
	err = audit.Scan(audit.Dir(s.cfg.Home), audit.Filter{}, func(rec *audit.Record) error {
		if d.Decision == nil {
			if rec.Seq == seq {
				if rec.Kind != audit.KindDecision {
					return errFound
				}
				d.Decision = rec
			}
			return nil
		}
		if rec.Kind == audit.KindOutcome && rec.RequestID == d.Decision.RequestID && d.Decision.RequestID != "" {
			d.Outcome = rec
			return errFound
		}
		if left--; left <= 0 {
			return errFound
		}
		return nil
	})
	if err != nil && !errors.Is(err, errFound) {
		http.Error(w, "reading the audit log: "+err.Error(), http.StatusInternalServerError)
		return
	}
	if d.Decision == nil {
		http.Error(w, "no decision record has that sequence number", http.StatusNotFound)
		return
	}
	d.Label, d.Target = d.Decision.Label(), d.Decision.Target()
	if a := d.Decision.Action; a != nil {
		if len(a.Params) > 0 {
			b, _ := json.MarshalIndent(a.Params, "", "  ")
			d.Params = string(b)
		}
		for k, v := range a.Resource {
			d.Resource = append(d.Resource, [2]string{k, v})
		}
		slices.SortFunc(d.Resource, func(x, y [2]string) int {
			if x[0] < y[0] {
				return -1
			}
			return 1
		})
	}
	s.render(w, http.StatusOK, "record", s.page(sess, "Record "+strconv.FormatUint(seq, 10), "traffic", d))
}
