// Package version tells which build of tf is running: module version,
// commit, build time and Go version, from the binary's build info or from
// values a release build stamps in.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
)

// Set by release builds (GoReleaser) with -ldflags "-X"; empty otherwise,
// when the build info supplies them.
var (
	version string
	commit  string
	date    string
)

// Info describes a build.
type Info struct {
	// Version is the module version (v1.2.3), "(devel)" for a build from a
	// work tree.
	Version string `json:"version"`
	// Commit is the VCS revision, with Modified set when the work tree had
	// uncommitted changes.
	Commit   string `json:"commit,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	// Time is the commit's time (build info) or the release build's time.
	Time     string `json:"time,omitempty"`
	Go       string `json:"go"`
	Platform string `json:"platform"`
}

var get = sync.OnceValue(func() Info {
	bi, ok := debug.ReadBuildInfo()
	return fromBuildInfo(bi, ok, version, commit, date)
})

// Get returns this binary's build.
func Get() Info { return get() }

func fromBuildInfo(bi *debug.BuildInfo, ok bool, v, c, d string) Info {
	in := Info{Version: v, Commit: c, Time: d, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if ok {
		in.Go = bi.GoVersion
		if in.Version == "" {
			in.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if in.Commit == "" {
					in.Commit = s.Value
				}
			case "vcs.time":
				if in.Time == "" {
					in.Time = s.Value
				}
			case "vcs.modified":
				in.Modified = s.Value == "true"
			}
		}
	}
	if in.Version == "" {
		in.Version = "(devel)"
	}
	return in
}

// Short is the version and the commit's first 12 characters, for a log
// line or an audit record: "v1.2.0 (3f2a9c1d0b7e)".
func (in Info) Short() string {
	s := in.Version
	if in.Commit != "" {
		c := in.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		if in.Modified {
			c += "+dirty"
		}
		s += " (" + c + ")"
	}
	return s
}

// String is the multi-line form tf version prints.
func (in Info) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "tf %s\n", in.Version)
	if in.Commit != "" {
		m := ""
		if in.Modified {
			m = " (modified)"
		}
		fmt.Fprintf(&b, "commit:   %s%s\n", in.Commit, m)
	}
	if in.Time != "" {
		fmt.Fprintf(&b, "built:    %s\n", in.Time)
	}
	fmt.Fprintf(&b, "go:       %s\nplatform: %s\n", in.Go, in.Platform)
	return b.String()
}
