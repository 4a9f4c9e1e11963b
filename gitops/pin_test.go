package gitops

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/go-git/go-git/v5/plumbing"
)

const goodPin = `{"version":1,"repository":"/srv/policy","ref":"main","commit":"0123456789abcdef0123456789abcdef01234567","require_signed":true}`

func TestPinRoundTrip(t *testing.T) {
	home := t.TempDir()
	if _, err := ReadPin(home); !errors.Is(err, ErrNoPin) {
		t.Fatalf("no pin: err = %v", err)
	}
	want, err := ParsePin([]byte(goodPin))
	if err != nil {
		t.Fatal(err)
	}
	if err := WritePin(home, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadPin(home)
	if err != nil {
		t.Fatal(err)
	}
	if *got != *want {
		t.Errorf("read back %+v, want %+v", got, want)
	}
	fi, err := os.Stat(filepath.Join(home, PinFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("pin mode %v, %v", fi.Mode(), err)
	}
	left, _ := filepath.Glob(filepath.Join(home, ".pin.*"))
	if len(left) != 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

func TestParsePinRefuses(t *testing.T) {
	for name, src := range map[string]string{
		"unknown key":     strings.Replace(goodPin, `"ref"`, `"branch":"x","ref"`, 1),
		"version":         strings.Replace(goodPin, `"version":1`, `"version":2`, 1),
		"short commit":    strings.Replace(goodPin, "0123456789abcdef0123456789abcdef01234567", "0123456", 1),
		"upper commit":    strings.Replace(goodPin, "0123456789abcdef0123456789abcdef01234567", "0123456789ABCDEF0123456789abcdef01234567", 1),
		"relative path":   strings.Replace(goodPin, "/srv/policy", "srv/policy", 1),
		"no repository":   strings.Replace(goodPin, "/srv/policy", "", 1),
		"bad ref":         strings.Replace(goodPin, `"main"`, `"ma..in"`, 1),
		"trailing data":   goodPin + "{}",
		"not json":        "repository: /srv/policy",
		"wrong type":      strings.Replace(goodPin, "true", `"yes"`, 1),
		"control in repo": strings.Replace(goodPin, "/srv/policy", `/srv/pol\nicy`, 1),
	} {
		if _, err := ParsePin([]byte(src)); err == nil {
			t.Errorf("%s: accepted %s", name, src)
		}
	}
	for _, repo := range []string{"https://github.com/acme/policy.git", "ssh://git@github.com/acme/policy", "git@github.com:acme/policy.git", "file:///srv/policy.git"} {
		if _, err := ParsePin([]byte(strings.Replace(goodPin, "/srv/policy", repo, 1))); err != nil {
			t.Errorf("remote %s refused: %v", repo, err)
		}
	}
}

func FuzzParsePin(f *testing.F) {
	f.Add([]byte(goodPin))
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`{"version":1,"repository":"git@h:x","ref":"a/b","commit":"` + strings.Repeat("a", 64) + `"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePin(data)
		if err != nil {
			return
		}
		// What parses is valid, and survives a round trip unchanged.
		if err := p.Validate(); err != nil {
			t.Fatalf("parsed pin does not validate: %v", err)
		}
		b, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		q, err := ParsePin(b)
		if err != nil {
			t.Fatalf("re-parsing %s: %v", b, err)
		}
		if *p != *q {
			t.Fatalf("round trip changed %+v into %+v", p, q)
		}
	})
}

func TestTreeFS(t *testing.T) {
	f := newFixture(t)
	h := f.commit(t, "files", map[string]string{
		"tameflare.yaml":       basePolicy,
		"policies/extra.yaml":  "rules: []\n",
		"policies/more.yaml":   "rules: []\n",
		"tests/base.yaml":      baseTests,
		"docs/deep/nested.txt": "x",
	}, nil)
	// A link in the tree must not be followed, nor listed.
	if err := os.Symlink("/etc/passwd", filepath.Join(f.dir, "policies", "link.yaml")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.wt.Add("policies/link.yaml"); err != nil {
		t.Fatal(err)
	}
	h = f.commit(t, "link", nil, nil)
	c, err := f.repo.CommitObject(plumbing.NewHash(h))
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := CommitFS(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := fstest.TestFS(fsys, "tameflare.yaml", "policies/extra.yaml", "policies/more.yaml", "tests/base.yaml", "docs/deep/nested.txt"); err != nil {
		t.Fatal(err)
	}
	info, err := fs.Stat(fsys, "tameflare.yaml")
	if err != nil || !info.ModTime().Equal(c.Committer.When) || info.Size() != int64(len(basePolicy)) {
		t.Errorf("stat %v %v", info, err)
	}
	if _, err := fsys.Open("policies/link.yaml"); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("opening a symbolic link: %v", err)
	}
	if m, _ := fs.Glob(fsys, "policies/*.yaml"); len(m) != 2 {
		t.Errorf("glob policies/*.yaml = %v", m)
	}
	if _, err := fsys.Open("../etc/passwd"); err == nil {
		t.Error("an invalid path was opened")
	}
	if _, err := fsys.Open("missing.yaml"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}
