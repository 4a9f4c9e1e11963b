package keyring

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadValue(t *testing.T) {
	cases := map[string]string{
		"tok\n":      "tok",
		"tok\r\n":    "tok",
		"tok":        "tok",
		"tok\n\n":    "tok\n",
		" spaced \n": " spaced ",
		"":           "",
		"a\nb\n":     "a\nb",
		"tok\r":      "tok\r",
	}
	for in, want := range cases {
		got, err := ReadValue(Console{In: strings.NewReader(in)}, "x")
		if err != nil || got != want {
			t.Errorf("ReadValue(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	big := strings.Repeat("a", MaxSecretSize+1)
	if _, err := ReadValue(Console{In: strings.NewReader(big)}, "x"); err == nil {
		t.Fatal("oversized value accepted")
	}
	if _, err := ReadValue(Console{In: iotest.ErrReader(errors.New("boom"))}, "x"); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("read error: %v", err)
	}
	// A terminal is read through the hidden prompt, never stdin.
	var prompt string
	got, err := ReadValue(Console{
		In:         strings.NewReader("from stdin"),
		InTerminal: true,
		ReadHidden: func(p string) (string, error) { prompt = p; return "typed", nil },
	}, "gh-token")
	if err != nil || got != "typed" || prompt != "Value for gh-token" {
		t.Fatalf("terminal: %q %v (prompt %q)", got, err, prompt)
	}
}

func TestCommandArguments(t *testing.T) {
	isolate(t)
	var out bytes.Buffer
	c := Console{In: strings.NewReader("v"), Out: &out, Err: &out}
	for _, tc := range []struct {
		f    func(Options, []string, Console) error
		args []string
		want string
	}{
		{CmdSet, nil, "missing secret NAME"},
		{CmdSet, []string{"a", "b"}, "never from the command line"},
		{CmdRemove, []string{"a", "b"}, "expected only a secret NAME"},
		{CmdList, []string{"x"}, "takes no arguments"},
		{CmdBackends, []string{"x"}, "takes no arguments"},
		{CmdBackends, nil, ""},
	} {
		err := tc.f(Options{Backend: BackendFile}, tc.args, c)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%v: %v", tc.args, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
		if strings.Contains(err.Error(), "b") && len(tc.args) > 1 && strings.Contains(err.Error(), `"b"`) {
			t.Errorf("error echoes an argument: %v", err)
		}
	}
	if err := CmdBackends(Options{Backend: "nope"}, nil, c); err == nil || !strings.Contains(err.Error(), "unknown backend") {
		t.Fatalf("bad backend: %v", err)
	}
}

func TestSetWarnsWhenEnvironmentWins(t *testing.T) {
	dir := isolate(t)
	var out, errOut bytes.Buffer
	c := Console{
		In: strings.NewReader("v1\n"), Out: &out, Err: &errOut,
		LookupEnv: func(k string) (string, bool) { return "x", k == "TF_SECRET_GH_TOKEN" },
	}
	if err := CmdSet(Options{Backend: BackendFile, FileDir: dir, Passphrase: fixed("p")}, []string{"gh-token"}, c); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut.String(), "TF_SECRET_GH_TOKEN is set in this environment") {
		t.Fatalf("no warning: %q", errOut.String())
	}
}

func FuzzReadValue(f *testing.F) {
	f.Add("tok\r\n")
	f.Add("\n")
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ReadValue(Console{In: strings.NewReader(in)}, "x")
		if err != nil {
			t.Fatal(err)
		}
		if got != in && got+"\n" != in && got+"\r\n" != in {
			t.Fatalf("ReadValue(%q) = %q", in, got)
		}
	})
}
