package audit

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
)

// crashEnv names the directory a re-executed test binary appends to until
// it is killed.
const crashEnv = "TF_AUDIT_CRASH_CHILD_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashEnv); dir != "" {
		os.Exit(crashChild(dir))
	}
	os.Exit(m.Run())
}

// crashChild appends from several goroutines forever and prints the seq
// of every record whose Append returned, one per line.
func crashChild(dir string) int {
	l, err := Open(dir, Options{SegmentBytes: 256 << 10, Gateway: "crash"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				r := decision(i)
				r.RequestID = fmt.Sprintf("g%d-%d", g, i)
				if err := l.Append(context.Background(), r); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(3)
				}
				mu.Lock()
				os.Stdout.WriteString(strconv.FormatUint(r.Seq, 10) + "\n")
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return 0
}

// TestCrashSIGKILL kills a writing process under load, several times on
// the same log, and checks that every acknowledged record survived, that
// verify accepts the log up to a torn last line, and that Open repairs it.
func TestCrashSIGKILL(t *testing.T) {
	dir := t.TempDir()
	ctx := testCtx(t)
	for round := range 3 {
		acked := crashRound(t, ctx, dir, 2000+round*1500)

		rep := mustVerify(t, dir)
		last := lastSeg(t, dir)
		for _, p := range rep.Problems {
			if p.Kind != ProblemTorn || p.Segment != segmentName(last) {
				t.Fatalf("round %d: verify after SIGKILL found %v", round, rep.Problems)
			}
		}
		if len(rep.Problems) > 1 {
			t.Fatalf("round %d: more than one torn line: %v", round, rep.Problems)
		}
		present := map[uint64]bool{}
		for _, r := range scanAll(t, dir) {
			present[r.Seq] = true
		}
		for _, s := range acked {
			if !present[s] {
				t.Fatalf("round %d: acknowledged seq %d is missing after SIGKILL", round, s)
			}
		}
		t.Logf("round %d: %d acknowledged, %d in the log, problems %v, notes %v", round, len(acked), len(present), rep.Problems, rep.Notes)

		// Open repairs what the kill left; the chain is then intact.
		l, err := Open(dir, Options{SegmentBytes: 256 << 10})
		if err != nil {
			t.Fatalf("round %d: Open after SIGKILL: %v", round, err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if rep := mustVerify(t, dir); !rep.OK() || len(rep.Notes) != 0 {
			t.Fatalf("round %d: verify after reopen: %+v", round, rep)
		}
	}
}

// crashRound runs the child until it has acknowledged at least n records,
// kills it with SIGKILL and returns every seq it acknowledged.
func crashRound(t *testing.T, ctx context.Context, dir string, n int) []uint64 {
	t.Helper()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	var acked []uint64
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		s, err := strconv.ParseUint(sc.Text(), 10, 64)
		if err != nil {
			// A line cut by the kill was never fully reported: not counted.
			continue
		}
		acked = append(acked, s)
		if len(acked) == n {
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
		}
	}
	err = cmd.Wait()
	killed = true
	if len(acked) < n {
		t.Fatalf("child stopped after %d acknowledgements: %v", len(acked), err)
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != -1 {
		t.Fatalf("child was not killed by a signal: %v", err)
	}
	return acked
}
