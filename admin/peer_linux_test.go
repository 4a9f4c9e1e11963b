package admin

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// A process started by this one (as the governed agent is started by the
// gateway's process) is refused; this process itself is not.
func TestRefuseDescendants(t *testing.T) {
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { child.Process.Kill(); child.Wait() }()
	req := func(pid int) *http.Request {
		r := httptest.NewRequest("GET", "/v1/status", nil)
		return r.WithContext(context.WithValue(r.Context(), peerKey{}, pid))
	}
	if err := RefuseDescendants(req(child.Process.Pid)); err == nil || !strings.Contains(err.Error(), "governed") {
		t.Fatalf("child: %v", err)
	}
	if err := RefuseDescendants(req(os.Getpid())); err != nil {
		t.Fatalf("self: %v", err)
	}
	if err := RefuseDescendants(httptest.NewRequest("GET", "/", nil)); err == nil {
		t.Fatal("unknown peer accepted")
	}
}

func TestParseStatPPID(t *testing.T) {
	if p, err := parseStatPPID("123 (a b) c) S 42 1 1 0"); err != nil || p != 42 {
		t.Fatalf("%d %v", p, err)
	}
	for _, bad := range []string{"", "123 (x", "1 (x) S", "1 (x) S -4"} {
		if _, err := parseStatPPID(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func FuzzParseStatPPID(f *testing.F) {
	f.Add("123 (tf) S 1 123 123 0 -1")
	f.Fuzz(func(t *testing.T, s string) {
		if p, err := parseStatPPID(s); err == nil && p < 0 {
			t.Fatalf("negative ppid %d", p)
		}
	})
}
