package injection

import (
	"encoding/base64"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func TestApplyReplacesAgentCredentials(t *testing.T) {
	h := http.Header{}
	h.Set("Authorization", "Bearer agent-fake")
	h.Set("Proxy-Authorization", "Basic cHJveHk6cHc=")
	h.Set("Cookie", "session=agent")
	h.Set("Accept", "application/json")
	in := &Injection{Secret: "gh-token"}
	if err := in.Apply(h, "real-token"); err != nil {
		t.Fatal(err)
	}
	if got := h.Values("Authorization"); !reflect.DeepEqual(got, []string{"Bearer real-token"}) {
		t.Fatalf("Authorization = %q", got)
	}
	for _, k := range []string{"Proxy-Authorization", "Cookie"} {
		if v := h.Get(k); v != "" {
			t.Errorf("%s survived: %q", k, v)
		}
	}
	if h.Get("Accept") != "application/json" {
		t.Error("unrelated header was removed")
	}
}

func TestApplyCustomHeaderAndFormat(t *testing.T) {
	h := http.Header{}
	h.Set("x-api-key", "agent-key")
	h.Set("Authorization", "Bearer agent")
	in := &Injection{Secret: "docs", Header: "x-api-key", Format: "Key {} v1"}
	if err := in.Apply(h, "s3"); err != nil {
		t.Fatal(err)
	}
	if got := h.Values("X-Api-Key"); !reflect.DeepEqual(got, []string{"Key s3 v1"}) {
		t.Fatalf("X-Api-Key = %q", got)
	}
	if h.Get("Authorization") != "" {
		t.Fatal("agent Authorization kept")
	}
}

func TestApplyRefusesBadSecretAndLeavesNoCredential(t *testing.T) {
	for _, secret := range []string{"", "a\r\nX-Evil: 1", "nul\x00"} {
		h := http.Header{"Authorization": {"Bearer agent"}}
		err := (&Injection{Secret: "t"}).Apply(h, secret)
		if err == nil {
			t.Fatalf("secret %q accepted", secret)
		}
		if secret != "" && strings.Contains(err.Error(), secret) {
			t.Fatalf("error shows the secret: %v", err)
		}
		if len(h) != 0 {
			t.Fatalf("headers left: %v", h)
		}
	}
}

func TestGitBasic(t *testing.T) {
	got := GitBasicHeader("tok")
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:tok"))
	if got != want {
		t.Fatalf("GitBasicHeader = %q, want %q", got, want)
	}
	h := http.Header{"Authorization": {"Basic YWdlbnQ6cHc="}}
	if err := (&Injection{Secret: "gh-token", Format: "token {}"}).ApplyGitBasic(h, "tok"); err != nil {
		t.Fatal(err)
	}
	if h.Get("Authorization") != want || len(h.Values("Authorization")) != 1 {
		t.Fatalf("Authorization = %q", h.Values("Authorization"))
	}
	if BearerHeader("x") != "Bearer x" {
		t.Fatal(BearerHeader("x"))
	}
}

func TestInjectionValidate(t *testing.T) {
	cases := []struct {
		in  *Injection
		bad string // substring of the error; "" for valid
	}{
		{&Injection{Secret: "gh-token"}, ""},
		{&Injection{Secret: "a.b_c-1", Header: "X-Token", Format: "{}"}, ""},
		{nil, "empty entry"},
		{&Injection{}, "invalid secret name: empty"},
		{&Injection{Secret: "has space"}, "invalid secret name"},
		{&Injection{Secret: "-flag"}, "invalid secret name"},
		{&Injection{Secret: "t", Header: "Bad Header"}, "not a valid header name"},
		{&Injection{Secret: "t", Header: "host"}, "cannot carry a credential"},
		{&Injection{Secret: "t", Header: "Content-Length"}, "cannot carry a credential"},
		{&Injection{Secret: "t", Format: "Bearer"}, "exactly once"},
		{&Injection{Secret: "t", Format: "{} {}"}, "exactly once"},
		{&Injection{Secret: "t", Format: "Bearer {}\n"}, "control character"},
	}
	for _, c := range cases {
		err := c.in.Validate()
		switch {
		case c.bad == "" && err != nil:
			t.Errorf("%+v: unexpected error %v", c.in, err)
		case c.bad != "" && (err == nil || !strings.Contains(err.Error(), c.bad)):
			t.Errorf("%+v: error %v, want one containing %q", c.in, err, c.bad)
		case c.bad != "" && !errors.Is(err, ErrInvalid):
			t.Errorf("%+v: error %v does not wrap ErrInvalid", c.in, err)
		}
	}
}

func TestCredentials(t *testing.T) {
	c := &Credentials{
		GitHub: &Injection{Secret: "gh-token"},
		NPM:    &Injection{Secret: "npm-token"},
		MCP: map[string]*Injection{
			"docs":  {Secret: "docs-token", Header: "Authorization", Format: "Bearer {}"},
			"other": {Secret: "gh-token"},
		},
		Connectors: map[string]*Injection{"jira": {Secret: "jira", Header: "X-Api-Key", Format: "{}"}},
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if got, want := c.Secrets(), []string{"docs-token", "gh-token", "jira", "npm-token"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Secrets = %v, want %v", got, want)
	}
	bad := &Credentials{
		MCP:        map[string]*Injection{"do.cs": {Secret: "x"}, "nil": nil, "ok": {Secret: "bad name"}},
		Connectors: map[string]*Injection{"github": {Secret: "x"}},
	}
	err := bad.Validate()
	if err == nil {
		t.Fatal("bad credentials accepted")
	}
	for _, want := range []string{`server name "do.cs"`, "credentials.mcp.nil: invalid credential injection: empty entry", "credentials.mcp.ok:", "credentials.connectors.github:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	var nilCreds *Credentials
	if nilCreds.Validate() != nil || nilCreds.Secrets() != nil {
		t.Fatal("nil credentials should be valid and empty")
	}
}

func TestValidSecretName(t *testing.T) {
	good := []string{"gh-token", "A", "npm.token_2", strings.Repeat("a", MaxNameLen)}
	bad := []string{"", "-x", ".x", "_x", "a b", "a/b", "a:b", "é", "@tameflare", strings.Repeat("a", MaxNameLen+1), "a\n"}
	for _, n := range good {
		if err := ValidSecretName(n); err != nil {
			t.Errorf("%q: %v", n, err)
		}
	}
	for _, n := range bad {
		if err := ValidSecretName(n); !errors.Is(err, ErrInvalidName) {
			t.Errorf("%q: got %v, want ErrInvalidName", n, err)
		}
	}
}

// FuzzValue checks that a formatted header value is either refused or a
// valid header value that holds the secret exactly once where {} was.
func FuzzValue(f *testing.F) {
	f.Add("gh-token", "Authorization", "Bearer {}", "tok")
	f.Add("x", "X-Key", "{}", "a\r\nb")
	f.Add("x", "", "", "")
	f.Fuzz(func(t *testing.T, name, header, format, secret string) {
		in := &Injection{Secret: name, Header: header, Format: format}
		v, err := in.Value(secret)
		if err != nil {
			if secret != "" && len(secret) > 3 && strings.Contains(err.Error(), secret) && !strings.Contains(name+header+format, secret) {
				t.Fatalf("error shows the secret: %v", err)
			}
			return
		}
		if !validHeaderValue(v) || !validHeaderName(in.HeaderName()) {
			t.Fatalf("invalid header %q: %q", in.HeaderName(), v)
		}
		pre, post, _ := strings.Cut(in.FormatString(), Placeholder)
		if v != pre+secret+post {
			t.Fatalf("value %q from format %q and secret %q", v, in.FormatString(), secret)
		}
		h := http.Header{}
		if err := in.Apply(h, secret); err != nil || h.Get(in.HeaderName()) != v {
			t.Fatalf("Apply: %v, %q", err, h.Get(in.HeaderName()))
		}
	})
}
