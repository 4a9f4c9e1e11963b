package agent

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// A repository's .git/config stays writable in the sandbox (git writes it
// for a push -u or a new remote), but some of its keys name programs that
// git runs: the user's next git command outside the sandbox would run
// them unsandboxed. GitGuard remembers those keys before the agent starts
// and, when it has ended, removes any the agent added or changed.

// gitRunKeys match the configuration keys whose values git runs or loads.
var gitRunKeys = []string{
	"core.fsmonitor", "core.hookspath", "core.sshcommand", "core.pager", "core.editor",
	"core.askpass", "core.gitproxy", "core.attributesfile", "core.excludesfile",
	"credential.helper", "include.path", "gpg.program", "gpg.*.program",
	"sequence.editor", "diff.external", "merge.*.driver", "diff.*.textconv", "diff.*.command",
	"filter.*.clean", "filter.*.smudge", "filter.*.process", "alias.*",
	"includeif.*.path", "uploadpack.packobjectshook", "receive.procreceiverefs",
	"remote.*.uploadpack", "remote.*.receivepack", "url.*.insteadof", "http.*.proxy", "http.proxy",
}

func gitRunKey(key string) bool {
	key = strings.ToLower(key)
	for _, p := range gitRunKeys {
		pre, suf, wild := strings.Cut(p, "*")
		if !wild && key == p || wild && len(key) > len(pre)+len(suf) && strings.HasPrefix(key, pre) && strings.HasSuffix(key, suf) {
			return true
		}
	}
	return false
}

// A GitGuard watches the configuration of the repositories the agent can
// write.
type GitGuard struct {
	before map[string][]string // config file → its run keys and values, "key=value"
}

// Changed is a run key that the agent added or changed in a repository.
type Changed struct {
	File, Entry string
}

// NewGitGuard records the run keys of each repository's .git/config in
// dirs (a directory's own repository and those one level down).
func NewGitGuard(dirs []string) *GitGuard {
	g := &GitGuard{before: map[string][]string{}}
	for _, f := range gitConfigs(dirs) {
		g.before[f] = runEntries(f)
	}
	return g
}

// Revert removes every run key the agent added or changed since
// NewGitGuard, restoring the values that were there, and returns what it
// removed.
func (g *GitGuard) Revert() []Changed {
	var out []Changed
	for f, before := range g.before {
		after := runEntries(f)
		var bad []string
		for _, e := range after {
			if !slices.Contains(before, e) {
				bad = append(bad, e)
			}
		}
		if len(bad) == 0 {
			continue
		}
		keys := map[string]bool{}
		for _, e := range bad {
			k, _, _ := strings.Cut(e, "=")
			keys[k] = true
			out = append(out, Changed{File: f, Entry: e})
		}
		for k := range keys {
			_ = gitConfig(f, "--unset-all", k)
			for _, e := range before {
				if bk, v, _ := strings.Cut(e, "="); bk == k {
					_ = gitConfig(f, "--add", k, v)
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b Changed) int { return strings.Compare(a.File+a.Entry, b.File+b.Entry) })
	return out
}

func gitConfigs(dirs []string) []string {
	var out []string
	add := func(d string) {
		f := filepath.Join(d, ".git", "config")
		if fi, err := os.Stat(f); err == nil && fi.Mode().IsRegular() && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	for _, d := range dirs {
		add(d)
		if ents, err := os.ReadDir(d); err == nil {
			for _, e := range ents {
				if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
					add(filepath.Join(d, e.Name()))
				}
			}
		}
	}
	return out
}

// runEntries lists the run keys of one config file as "key=value".
func runEntries(file string) []string {
	out, err := gitOutput(file, "--list")
	if err != nil {
		return nil
	}
	var entries []string
	for _, line := range bytes.Split(out, []byte{0}) {
		k, v, ok := bytes.Cut(line, []byte{'\n'})
		if ok && gitRunKey(string(k)) {
			entries = append(entries, strings.ToLower(string(k))+"="+string(v))
		}
	}
	return entries
}

func gitOutput(file string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", append([]string{"config", "--file", file, "--null"}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
	return cmd.Output()
}

func gitConfig(file string, args ...string) error {
	_, err := gitOutput(file, args...)
	return err
}
