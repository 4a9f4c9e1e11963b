package dashboard

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

func FuzzParseFilter(f *testing.F) {
	f.Add("decision=deny&connector=github&action=github.pr.*&gateway=ci")
	f.Add("decision=maybe")
	f.Add("action=%00")
	f.Add("gateway=a&gateway=b")
	f.Add("range=24h&before=120")
	f.Add("since=2026-01-02T15:04&until=2026-01-03T00:00")
	f.Add("since=2026-01-03T00:00&until=2026-01-02T15:04")
	now := time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		tf, af, err := parseFilter(q, now)
		if err != nil {
			return
		}
		if err := af.Validate(); err != nil {
			t.Fatalf("accepted filter %+v does not validate: %v", af, err)
		}
		// The stream's URL, and the older page's, carry the same filter.
		query := tf.Query()
		if tf.Before != 0 {
			query = strings.TrimPrefix(tf.Older(tf.Before), "/traffic?")
		}
		q2, err := url.ParseQuery(query)
		if err != nil {
			t.Fatal(err)
		}
		tf2, af2, err := parseFilter(q2, now)
		if err != nil || tf2 != tf || af2 != af {
			t.Fatalf("round trip of %q: %+v %v, want %+v", raw, tf2, err, tf)
		}
	})
}

func FuzzParseScope(f *testing.F) {
	for _, s := range [][2]string{{"all", ""}, {"connector", "github"}, {"gateway", "ci-1"}, {"gateway", "../x"}, {"all", "x"}, {"", ""}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, kind, name string) {
		s, err := parseScope(kind, name)
		if err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("accepted scope %+v: %v", s, err)
		}
		if s.All != (kind == "all") || s.String() == "none" {
			t.Fatalf("scope %+v from %q %q", s, kind, name)
		}
	})
}
