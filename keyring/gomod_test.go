package keyring

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// jose2go encrypts the file backend. v1.5.1/v1.6.0 bounded the PBES2
// iteration count (CVE-2023-50658, a DoS through a huge p2c) and v1.7.0
// bounded decompression (the 2025 DoS); an older requirement must not come
// back through a careless downgrade.
const (
	jose2go       = "github.com/dvsekhvalnov/jose2go"
	jose2goMinVer = "v1.7.0"
)

func TestJose2goIsFixedVersion(t *testing.T) {
	b, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	req, replaced, err := modRequirement(string(b), jose2go)
	if err != nil {
		t.Fatal(err)
	}
	if replaced {
		t.Fatalf("go.mod replaces %s: the fixed-version check cannot vouch for a replacement", jose2go)
	}
	if req == "" {
		t.Fatalf("go.mod does not require %s (the 99designs file backend needs it)", jose2go)
	}
	if c, err := semverCompare(req, jose2goMinVer); err != nil || c < 0 {
		t.Fatalf("go.mod requires %s %s (%v); want %s or newer", jose2go, req, err, jose2goMinVer)
	}
}

// modRequirement finds module's version in the require directives of a
// go.mod file, and whether a replace directive names it.
func modRequirement(gomod, module string) (version string, replaced bool, err error) {
	sc := bufio.NewScanner(strings.NewReader(gomod))
	block := ""
	for line := 1; sc.Scan(); line++ {
		l := sc.Text()
		if i := strings.Index(l, "//"); i >= 0 {
			l = l[:i]
		}
		f := strings.Fields(l)
		switch {
		case len(f) == 0:
			continue
		case block != "" && f[0] == ")":
			block = ""
			continue
		case block == "" && len(f) == 2 && f[1] == "(":
			block = f[0]
			continue
		case block == "":
			block1 := f[0]
			f = f[1:]
			if err := directive(block1, f, module, &version, &replaced); err != nil {
				return "", false, fmt.Errorf("go.mod:%d: %w", line, err)
			}
			continue
		}
		if err := directive(block, f, module, &version, &replaced); err != nil {
			return "", false, fmt.Errorf("go.mod:%d: %w", line, err)
		}
	}
	return version, replaced, sc.Err()
}

func directive(verb string, f []string, module string, version *string, replaced *bool) error {
	if len(f) == 0 || f[0] != module {
		return nil
	}
	switch verb {
	case "require":
		if len(f) != 2 {
			return fmt.Errorf("malformed require of %s", module)
		}
		if *version != "" {
			return fmt.Errorf("%s required twice", module)
		}
		*version = f[1]
	case "replace":
		*replaced = true
	}
	return nil
}

// semverCompare compares vMAJOR.MINOR.PATCH versions, ignoring build
// metadata; a pre-release sorts before its release.
func semverCompare(a, b string) (int, error) {
	pa, err := parseSemver(a)
	if err != nil {
		return 0, err
	}
	pb, err := parseSemver(b)
	if err != nil {
		return 0, err
	}
	for i := 0; i < 3; i++ {
		if pa.n[i] != pb.n[i] {
			if pa.n[i] < pb.n[i] {
				return -1, nil
			}
			return 1, nil
		}
	}
	switch {
	case pa.pre == pb.pre:
		return 0, nil
	case pa.pre == "":
		return 1, nil
	case pb.pre == "":
		return -1, nil
	case pa.pre < pb.pre:
		return -1, nil
	}
	return 1, nil
}

type semver struct {
	n   [3]int
	pre string
}

func parseSemver(v string) (semver, error) {
	var s semver
	rest, ok := strings.CutPrefix(v, "v")
	if !ok {
		return s, fmt.Errorf("version %q lacks the v prefix", v)
	}
	rest, _, _ = strings.Cut(rest, "+")
	rest, s.pre, _ = strings.Cut(rest, "-")
	parts := strings.Split(rest, ".")
	if len(parts) != 3 {
		return s, fmt.Errorf("version %q is not vMAJOR.MINOR.PATCH", v)
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || p != strconv.Itoa(n) {
			return s, fmt.Errorf("version %q: bad number %q", v, p)
		}
		s.n[i] = n
	}
	return s, nil
}

func TestModRequirement(t *testing.T) {
	cases := []struct {
		gomod, want string
		replaced    bool
		bad         bool
	}{
		{"module x\nrequire (\n\tgithub.com/dvsekhvalnov/jose2go v1.11.0 // indirect\n)\n", "v1.11.0", false, false},
		{"module x\nrequire github.com/dvsekhvalnov/jose2go v1.5.0\n", "v1.5.0", false, false},
		{"module x\nrequire github.com/dvsekhvalnov/jose2go v1.7.0\nreplace github.com/dvsekhvalnov/jose2go => ../fork\n", "v1.7.0", true, false},
		{"module x\nreplace (\n github.com/dvsekhvalnov/jose2go v1.7.0 => github.com/x/y v1.0.0\n)\n", "", true, false},
		{"module x\n// github.com/dvsekhvalnov/jose2go v9.0.0\nrequire github.com/dvsekhvalnov/jose2goX v9.0.0\n", "", false, false},
		{"require (\ngithub.com/dvsekhvalnov/jose2go\n)", "", false, true},
		{"require (\ngithub.com/dvsekhvalnov/jose2go v1.7.0\ngithub.com/dvsekhvalnov/jose2go v1.8.0\n)", "", false, true},
	}
	for _, c := range cases {
		v, r, err := modRequirement(c.gomod, jose2go)
		if (err != nil) != c.bad || v != c.want || r != c.replaced {
			t.Errorf("%q: %q %v %v", c.gomod, v, r, err)
		}
	}
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"v1.11.0", "v1.7.0", 1}, {"v1.5.0", "v1.7.0", -1}, {"v1.7.0", "v1.7.0", 0},
		{"v1.7.0-rc.1", "v1.7.0", -1}, {"v1.7.1+meta", "v1.7.0", 1}, {"v2.0.0", "v1.99.99", 1},
	} {
		if got, err := semverCompare(c.a, c.b); err != nil || got != c.want {
			t.Errorf("semverCompare(%s, %s) = %d, %v", c.a, c.b, got, err)
		}
	}
	for _, bad := range []string{"1.7.0", "v1.7", "v1.x.0", "v01.7.0", "v-1.7.0"} {
		if _, err := parseSemver(bad); err == nil {
			t.Errorf("parseSemver(%q) accepted", bad)
		}
	}
}

func FuzzModRequirement(f *testing.F) {
	f.Add("module x\nrequire (\n\tgithub.com/dvsekhvalnov/jose2go v1.11.0 // indirect\n)\n")
	f.Add("require github.com/dvsekhvalnov/jose2go v1.5.0-pre+x\n")
	f.Fuzz(func(t *testing.T, gomod string) {
		v, _, err := modRequirement(gomod, jose2go)
		if err != nil {
			return
		}
		if v != "" && strings.ContainsAny(v, " \t\n") {
			t.Fatalf("version %q", v)
		}
		if p, err := parseSemver(v); err == nil {
			if c, _ := semverCompare(v, v); c != 0 {
				t.Fatalf("%q not equal to itself (%+v)", v, p)
			}
		}
	})
}
