package version

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.4.0"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
		{Key: "vcs.time", Value: "2026-12-01T10:00:00Z"},
		{Key: "vcs.modified", Value: "true"},
	}}
	in := fromBuildInfo(bi, true, "", "", "")
	if in.Version != "v1.4.0" || in.Go != "go1.26.8" || in.Time != "2026-12-01T10:00:00Z" || !in.Modified {
		t.Errorf("got %+v", in)
	}
	if got := in.Short(); got != "v1.4.0 (0123456789ab+dirty)" {
		t.Errorf("Short() = %q", got)
	}
	if s := in.String(); !strings.Contains(s, "tf v1.4.0\n") || !strings.Contains(s, "commit:   0123456789abcdef0123456789abcdef01234567 (modified)") {
		t.Errorf("String():\n%s", s)
	}

	// A release build's stamped values win over the build info.
	in = fromBuildInfo(bi, true, "v2.0.0", "fedcba", "2026-12-02T00:00:00Z")
	if in.Version != "v2.0.0" || in.Commit != "fedcba" || in.Time != "2026-12-02T00:00:00Z" {
		t.Errorf("stamped: %+v", in)
	}

	// No build info at all (a test binary may lack it).
	in = fromBuildInfo(nil, false, "", "", "")
	if in.Version != "(devel)" || in.Go == "" || in.Short() != "(devel)" {
		t.Errorf("without build info: %+v", in)
	}
}
