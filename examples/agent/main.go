// Command agent acts like a coding agent on GitHub and npm, so that
// `tf run -- go run ./examples/agent` shows governance at work on any
// machine, even without a network: it reads a repository, then tries what
// the example policy refuses, and prints what each request got.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

type step struct {
	what, method, url, body string
}

var steps = []step{
	{"read the repository", "GET", "https://api.github.com/repos/acme/app", ""},
	{"delete the repository", "DELETE", "https://api.github.com/repos/acme/app", ""},
	{"merge pull request 42", "PUT", "https://api.github.com/repos/acme/app/pulls/42/merge", `{"merge_method":"squash"}`},
	{"delete branch old-feature", "DELETE", "https://api.github.com/repos/acme/app/git/refs/heads/old-feature", ""},
	{"publish to npm", "PUT", "https://registry.npmjs.org/@acme%2fapp", `{"name":"@acme/app","dist-tags":{"latest":"1.0.0"},"versions":{"1.0.0":{}}}`},
}

func main() {
	// Go's client reads HTTPS_PROXY and SSL_CERT_FILE, which tf run sets.
	// A request the policy holds for a person waits for an answer; this
	// agent does not wait long.
	const patience = 3 * time.Second
	client := &http.Client{Timeout: patience}
	for _, s := range steps {
		var body io.Reader
		if s.body != "" {
			body = strings.NewReader(s.body)
		}
		req, err := http.NewRequest(s.method, s.url, body)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		req.Header.Set("Content-Type", "application/json")
		res, err := client.Do(req)
		if errors.Is(err, context.DeadlineExceeded) || os.IsTimeout(err) {
			fmt.Printf("%-28s held by tf for a person's approval (tf approvals list); gave up after %v\n", s.what, patience)
			continue
		}
		if err != nil {
			fmt.Printf("%-28s error: %v\n", s.what, err)
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<16))
		res.Body.Close()
		fmt.Printf("%-28s %d %s\n", s.what, res.StatusCode, explain(res, b))
	}
}

// explain summarises a response: tf's refusal with its rule and reason,
// or what the upstream said.
func explain(res *http.Response, body []byte) string {
	if d := res.Header.Get("X-TF-Decision"); d != "" && res.StatusCode == http.StatusForbidden {
		var r struct{ Rule, Reason string }
		_ = json.Unmarshal(body, &r)
		by := "the policy default"
		if r.Rule != "" {
			by = "rule " + r.Rule
		}
		return fmt.Sprintf("refused by tf (%s, %s): %s", d, by, r.Reason)
	}
	if res.StatusCode == http.StatusBadGateway {
		return "allowed by tf; the upstream is unreachable (offline?)"
	}
	return "allowed by tf"
}
