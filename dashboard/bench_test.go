package dashboard

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/rules"
)

// benchServer is a dashboard over a log of n decisions and outcomes, with
// a session cookie.
func benchServer(b *testing.B, n int) (*Server, *http.Cookie) {
	b.Helper()
	home := b.TempDir()
	log, err := audit.Open(audit.Dir(home), audit.Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for i := range n {
		id := fmt.Sprintf("req-%d", i)
		eff := rules.Allow
		if i%7 == 0 {
			eff = rules.Deny
		}
		if err := log.Append(ctx, &audit.Record{Time: time.Now(), Kind: audit.KindDecision, RequestID: id, Gateway: "bench",
			Action:   &rules.Action{ID: id, Type: "github.repo.get", Connector: "github", Gateway: "bench", Resource: map[string]string{"owner": "acme", "repo": "app"}},
			Decision: &rules.Decision{Effect: eff, Rule: "r"}}); err != nil {
			b.Fatal(err)
		}
		if err := log.Append(ctx, &audit.Record{Time: time.Now(), Kind: audit.KindOutcome, RequestID: id, Gateway: "bench", Status: 200, DurationMS: 3}); err != nil {
			b.Fatal(err)
		}
	}
	if err := log.Close(); err != nil {
		b.Fatal(err)
	}
	s, err := Start(Config{Home: home})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	tok, err := s.auth.newLoginToken()
	if err != nil {
		b.Fatal(err)
	}
	id, ok, err := s.auth.login(tok, time.Now())
	if err != nil || !ok {
		b.Fatal("login failed", err)
	}
	return s, &http.Cookie{Name: cookieName, Value: id}
}

func benchPage(b *testing.B, path string) {
	s, ck := benchServer(b, 10000)
	h := s.handler()
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodGet, "http://"+s.Addr()+path, nil)
		req.AddCookie(ck)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("%s: %d", path, rec.Code)
		}
	}
}

// BenchmarkTrafficPage renders the Traffic page (the last 200 of 10,000
// decisions, joined with their outcomes).
func BenchmarkTrafficPage(b *testing.B) { benchPage(b, "/traffic") }

// BenchmarkTrafficPageFiltered renders it with a decision filter.
func BenchmarkTrafficPageFiltered(b *testing.B) { benchPage(b, "/traffic?decision=deny") }

// BenchmarkRecordPage finds and renders one record in the middle of the
// log.
func BenchmarkRecordPage(b *testing.B) { benchPage(b, "/traffic/10001") }
