package gitops

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/rules"
)

var replayRecords = flag.Int("replay.records", 1_000_000, "decision records in BenchmarkPlanReplay's synthetic audit log")

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	os.Exit(code)
}

var (
	benchOnce sync.Once
	benchDir  string
	benchErr  error
)

// benchPolicy is a 100-rule policy: allow rules over 60 action types,
// deny rules with conditions (native and expr), approvals. variant shifts
// some conditions so that the candidate differs from the base.
func benchPolicy(variant int) (string, string) {
	var b strings.Builder
	b.WriteString("version: 1\nmode: enforce\ndefault: deny\nrules:\n")
	for i := 0; i < 100; i++ {
		fmt.Fprintf(&b, "  - name: rule-%03d\n", i)
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, "    actions: [svc%d.*.get, svc%d.*.list]\n    decision: allow\n", i%15, i%15)
		case 1:
			fmt.Fprintf(&b, "    actions: [svc%d.repo.push]\n    when: params.branch startsWith \"rel%d/\"\n    decision: deny\n", i%15, (i+variant)%7)
		case 2:
			fmt.Fprintf(&b, "    actions: [svc%d.repo.push]\n    when: params.branch matches \"^(main|prod%d)$\" && resource.owner != \"sandbox\"\n    decision: deny\n", i%15, i%5)
		case 3:
			fmt.Fprintf(&b, "    actions: [svc%d.pr.merge]\n    when: params.number > %d\n    decision: require_approval\n", i%15, 100*((i+variant)%3))
		}
	}
	tests := "cases:\n  - name: nothing matches\n    action: {type: none.at.all}\n    expect: deny\n"
	return b.String(), tests
}

// benchAction is the i-th synthetic recorded action.
func benchAction(i int) *rules.Action {
	verbs := []string{"repo.get", "pr.list", "repo.push", "repo.push", "pr.merge"}
	a := &rules.Action{
		ID:        fmt.Sprintf("r%07d", i),
		Type:      fmt.Sprintf("svc%d.%s", i%17, verbs[i%len(verbs)]),
		Connector: "github",
		Resource:  map[string]string{"owner": "acme", "repo": fmt.Sprintf("app%d", i%50)},
		Request:   rules.Request{Method: "POST", Host: "api.github.com", Path: "/repos/acme/app"},
	}
	switch verbs[i%len(verbs)] {
	case "repo.push":
		a.Params = map[string]any{"branch": []string{"main", "feature/x", "rel3/1", "rel5/2", "prod2", "dev"}[i%6]}
	case "pr.merge":
		a.Params = map[string]any{"number": float64(i % 400)}
	}
	return a
}

// writeBenchLog appends n decision records with many concurrent appenders,
// so that each fsync covers a large batch.
func writeBenchLog(dir string, n int) error {
	l, err := audit.Open(dir, audit.Options{})
	if err != nil {
		return err
	}
	const workers = 512
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	ctx := context.Background()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += workers {
				err := l.Append(ctx, &audit.Record{
					Kind: audit.KindDecision, Time: epoch.Add(time.Duration(i) * time.Millisecond),
					RequestID: fmt.Sprintf("r%07d", i), Gateway: "gw1",
					Action: benchAction(i), Decision: &rules.Decision{Effect: rules.Allow, Rule: "rule-000", Revision: "x"},
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		l.Close()
		return err
	}
	return l.Close()
}

// benchLog writes the shared synthetic log once per process.
func benchLog(b *testing.B) string {
	benchOnce.Do(func() {
		benchDir, benchErr = os.MkdirTemp("", "tf-gitops-bench-")
		if benchErr == nil {
			t0 := time.Now()
			benchErr = writeBenchLog(audit.Dir(benchDir), *replayRecords)
			b.Logf("wrote %d records in %v", *replayRecords, time.Since(t0).Round(time.Millisecond))
		}
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchDir
}

// BenchmarkScanFloor reads the same log with audit.Scan and does nothing
// with the records: the part of BenchmarkPlanReplay that is reading and
// decoding, which no change in this package can make faster.
func BenchmarkScanFloor(b *testing.B) {
	dir := audit.Dir(benchLog(b))
	b.ResetTimer()
	n := 0
	for i := 0; i < b.N; i++ {
		if err := audit.Scan(dir, audit.Filter{Kind: audit.KindDecision}, func(*audit.Record) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkPlanReplay replays a synthetic audit log of -replay.records
// decision records (default 1,000,000) through two 100-rule policies: the
// whole of tf policy plan, from reading the pin to the aggregated plan.
// Run it with -benchtime=1x; the log is written once per process.
func BenchmarkPlanReplay(b *testing.B) {
	home := testHome(b)
	f := newFixture(b)
	p1, t1 := benchPolicy(0)
	p2, t2 := benchPolicy(1)
	first := f.commit(b, "base", map[string]string{"tameflare.yaml": p1, "tests/t.yaml": t1}, nil)
	f.commit(b, "candidate", map[string]string{"tameflare.yaml": p2, "tests/t.yaml": t2}, nil)
	pinTo(b, home, f.dir, first)

	// The plan reads $TF_HOME/audit; point it at the shared log.
	if err := os.Symlink(audit.Dir(benchLog(b)), audit.Dir(home)); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ResetTimer()
	var pl *Plan
	for i := 0; i < b.N; i++ {
		var err error
		if pl, err = ComputePlan(ctx, PlanOptions{Home: home}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if pl.Counts.Replayed != *replayRecords {
		b.Fatalf("replayed %d records, want %d", pl.Counts.Replayed, *replayRecords)
	}
	if !pl.HasChanges() {
		b.Fatal("the candidate changes nothing; the benchmark would measure too little")
	}
	b.ReportMetric(float64(pl.Counts.Replayed)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.Logf("%s", pl.Summary())
}

// BenchmarkReplayDecide is the part of a plan this package does: deciding
// one recorded action with both 100-rule policies and aggregating, without
// reading the log. ns/op is per record.
func BenchmarkReplayDecide(b *testing.B) {
	load := func(variant int) *rules.Policy {
		src, tests := benchPolicy(variant)
		p, err := rules.LoadFS(mapFS(map[string]string{"tameflare.yaml": src, "tests/t.yaml": tests}), "bench")
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	base, cand := load(0), load(1)
	rd := newReplayer(base, cand, diffPolicies(base, cand))
	recs := make([]*audit.Record, 4096)
	for i := range recs {
		recs[i] = &audit.Record{Kind: audit.KindDecision, Time: epoch, Gateway: "gw1", RequestID: "r",
			Action: benchAction(i), Decision: &rules.Decision{Effect: rules.Allow}}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rd.add(recs[i%len(recs)])
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
