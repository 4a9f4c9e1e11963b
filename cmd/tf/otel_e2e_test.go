package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	collogpb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/protobuf/proto"
)

// tf run with OTEL_EXPORTER_OTLP_ENDPOINT ships the session's records
// before it exits, tf status says shipping is up to date, and tf policy
// plan replays other machines' logs named with --audit.
func TestRunShipsAuditAndPlanReadsManySources(t *testing.T) {
	var got atomic.Int64
	var auth atomic.Value
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req collogpb.ExportLogsServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		auth.Store(r.Header.Get("Authorization"))
		for _, rl := range req.ResourceLogs {
			for _, sl := range rl.ScopeLogs {
				got.Add(int64(len(sl.LogRecords)))
			}
		}
	}))
	defer sink.Close()
	const token = "tok-5ecret-e2e-7731"
	home, other := t.TempDir(), t.TempDir()
	repo := filepath.Join(t.TempDir(), "policy")
	env := []string{"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@e", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@e", "HOME=" + t.TempDir()}
	if r := runTF(t, home, env, "init", repo); r.code != 0 {
		t.Fatalf("tf init: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	otel := append(env, "OTEL_EXPORTER_OTLP_ENDPOINT="+sink.URL, "OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20"+token)
	if r := runTF(t, home, otel, "run", "--", "true"); r.code != 0 {
		t.Fatalf("tf run: exit %d\n%s", r.code, r.stderr)
	} else if strings.Contains(r.stderr, token) {
		t.Fatalf("tf run printed the header value:\n%s", r.stderr)
	}
	// gateway.started and gateway.stopped, shipped before tf run exited.
	if n := got.Load(); n < 2 {
		t.Fatalf("the collector got %d records, want the session's 2 events", n)
	}
	if a, _ := auth.Load().(string); a != "Bearer "+token {
		t.Fatalf("Authorization %q", a)
	}
	r := runTF(t, home, env, "status")
	if r.code != 0 || !strings.Contains(r.stdout, "audit shipping to "+sink.URL+"/v1/logs") || !strings.Contains(r.stdout, "up to date") {
		t.Fatalf("tf status: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(r.stdout, token) {
		t.Fatalf("tf status shows the header value:\n%s", r.stdout)
	}
	for _, dir := range []string{home, filepath.Join(home, "otel")} {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if b, _ := os.ReadFile(filepath.Join(dir, e.Name())); strings.Contains(string(b), token) {
				t.Fatalf("%s holds the header value", e.Name())
			}
		}
	}

	// Another machine's log, and this one's, replayed together.
	if r := runTF(t, other, env, "run", "--policy", repo, "--", "true"); r.code != 0 {
		t.Fatalf("tf run on the other machine: exit %d\n%s", r.code, r.stderr)
	}
	r = runTF(t, home, env, "policy", "plan", "--audit", "@local", "--audit", other)
	if r.code != 0 || !strings.Contains(r.stdout, "in 2 audit sources") {
		t.Fatalf("tf policy plan --audit: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runTF(t, home, env, "policy", "plan", "--audit", filepath.Join(t.TempDir(), "missing.json"))
	if r.code != 1 || !strings.Contains(r.stderr, "missing.json") {
		t.Fatalf("a missing source: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
