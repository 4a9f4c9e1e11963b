package sched

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The test binary is its own helper: with TF_SCHED_HELPER set it calls
// KeepAwake and reports what the process and a child of it see.
func TestMain(m *testing.M) {
	if os.Getenv("TF_SCHED_HELPER") != "" {
		helper()
		return
	}
	os.Exit(m.Run())
}

type report struct {
	SamePID    bool // the second start kept the first one's PID
	Applied    bool
	GODEBUG    string
	HasGODEBUG bool
	Marker     bool
	Initial    string // GODEBUG in the environment the runtime read
	Child      string // what a child process sees
}

func helper() {
	pid := os.Getpid()
	if p := os.Getenv("TF_SCHED_PID"); p == "" {
		// The first image: note the PID, which the second must share.
		os.Setenv("TF_SCHED_PID", fmt.Sprint(pid))
	}
	KeepAwake()
	var r report
	r.SamePID = os.Getenv("TF_SCHED_PID") == fmt.Sprint(pid)
	r.Applied = Applied()
	r.GODEBUG, r.HasGODEBUG = os.LookupEnv("GODEBUG")
	_, r.Marker = os.LookupEnv(marker)
	initial, _ := os.ReadFile("/proc/self/environ")
	for _, kv := range bytes.Split(initial, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("GODEBUG=")); ok {
			r.Initial = string(v)
		}
	}
	out, _ := exec.Command("sh", "-c", `printf '%s|%s' "${GODEBUG-unset}" "${TF_SCHED_REEXEC-unset}"`).Output()
	r.Child = string(out)
	json.NewEncoder(os.Stdout).Encode(r)
}

func runHelper(t *testing.T, godebug *string) report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run", "^$")
	cmd.Env = []string{"TF_SCHED_HELPER=1", "PATH=" + os.Getenv("PATH")}
	if godebug != nil {
		cmd.Env = append(cmd.Env, "GODEBUG="+*godebug)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, stderr.String())
	}
	if strings.Contains(stderr.String(), "SCHED") {
		t.Errorf("the helper printed a scheduler trace:\n%s", stderr.String())
	}
	var r report
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("helper said %q: %v", out, err)
	}
	return r
}

func TestKeepAwake(t *testing.T) {
	tooLong := uptime() > maxUptime
	str := func(s string) *string { return &s }
	for _, tc := range []struct {
		name    string
		godebug *string
		initial string // GODEBUG the runtime read
		child   string
	}{
		{"unset", nil, setting, "unset|unset"},
		{"empty", str(""), setting, "|unset"},
		{"other settings", str("http2client=0"), "http2client=0," + setting, "http2client=0|unset"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runHelper(t, tc.godebug)
			if tooLong {
				// The trace line would be due soon: nothing changes.
				if r.Applied || r.Marker {
					t.Fatalf("applied on a machine up longer than %v: %+v", maxUptime, r)
				}
				return
			}
			if !r.Applied || !r.SamePID {
				t.Fatalf("not applied in place: %+v", r)
			}
			if r.Initial != tc.initial {
				t.Errorf("the runtime read GODEBUG=%q, want %q", r.Initial, tc.initial)
			}
			want, set := "", tc.godebug != nil
			if set {
				want = *tc.godebug
			}
			if r.GODEBUG != want || r.HasGODEBUG != set || r.Marker {
				t.Errorf("the process sees GODEBUG=%q (set %v, marker %v), want the user's %q (set %v)", r.GODEBUG, r.HasGODEBUG, r.Marker, want, set)
			}
			if r.Child != tc.child {
				t.Errorf("a child sees %q, want %q", r.Child, tc.child)
			}
		})
	}
}

// The user's own schedtrace choice wins, including turning it off.
func TestKeepAwakeLeavesUsersChoice(t *testing.T) {
	for _, g := range []string{"schedtrace=0", "gctrace=0, schedtrace=0", "scheddetail=0"} {
		r := runHelper(t, &g)
		if r.Applied || r.Initial != g || r.GODEBUG != g {
			t.Errorf("GODEBUG=%q: %+v", g, r)
		}
	}
}
