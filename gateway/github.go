package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tameflare/tf/connectors"
	"github.com/tameflare/tf/rules"
)

// needsParam reports whether a rule of p that applies to actionType reads
// params.<param> in its condition.
func needsParam(p *rules.Policy, actionType, param string) bool {
	for _, r := range p.Rules {
		if !strings.Contains(r.When, "params."+param) {
			continue
		}
		for _, a := range r.Actions {
			if rules.GlobMatch(a, actionType) {
				return true
			}
		}
	}
	return false
}

// directClient reaches upstreams on the gateway's own behalf (never through
// the agent's proxy), honouring the upstreams map and extra CAs.
func directClient(upstreams map[string]string, roots *x509.CertPool) *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second}
	return &http.Client{
		Timeout: 15 * time.Second,
		Transport: &http.Transport{
			Proxy: nil,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				host, _, _ := net.SplitHostPort(addr)
				if to, ok := upstreams[addr]; ok {
					addr = to
				} else if to, ok := upstreams[host]; ok {
					addr = to
				}
				return d.DialContext(ctx, network, addr)
			},
			TLSClientConfig:   &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
			ForceAttemptHTTP2: true,
		},
		// A lookup follows no redirect: it would carry the credential
		// elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// lookupBase finds the base branch of a pull request with one authenticated
// GET to the GitHub API, for rules that read params.base of a merge that
// names only the pull request. The lookup is recorded; a failure refuses
// the merge (the connector turns the error into a refusal).
func (g *Gateway) lookupBase(ctx context.Context, host, owner, repo string, number int) (base string, err error) {
	defer func() {
		details := map[string]any{"owner": owner, "repo": repo, "number": number}
		if err != nil {
			details["error"] = g.redact(err.Error())
		} else {
			details["base"] = base
		}
		_ = g.log.Event(context.Background(), g.name, "github.base_lookup", details)
	}()
	u := fmt.Sprintf("%s/repos/%s/%s/pulls/%d", restBase(host), url.PathEscape(owner), url.PathEscape(repo), number)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	if c := g.policy.Load().Credentials; c != nil && c.GitHub != nil && g.secrets != nil {
		secret, err := g.secrets.Get(c.GitHub.Secret)
		if err != nil {
			return "", fmt.Errorf("credential %s: %w", c.GitHub.Secret, err)
		}
		if err := c.GitHub.Apply(req.Header, secret); err != nil {
			return "", err
		}
	}
	res, err := g.direct.Do(req)
	if err != nil {
		return "", fmt.Errorf("GET %s: %s", u, g.redact(err.Error()))
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", u, res.Status)
	}
	var pr struct {
		Base struct {
			Ref string `json:"ref"`
		} `json:"base"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 4<<20)).Decode(&pr); err != nil {
		return "", fmt.Errorf("GET %s: %w", u, err)
	}
	return pr.Base.Ref, nil
}

// lookupRef resolves the node id of a git ref with one authenticated
// GraphQL query to the GitHub host that serves host (api.github.com for
// github.com's hosts, /api/graphql on an Enterprise host), for GraphQL
// mutations that name their ref by id. The lookup is recorded; a failure
// refuses the mutation.
func (g *Gateway) lookupRef(ctx context.Context, host, id string) (node connectors.RefNode, err error) {
	defer func() {
		details := map[string]any{"host": host, "id": id}
		if err != nil {
			details["error"] = g.redact(err.Error())
		} else {
			details["owner"], details["repo"], details["ref"] = node.Owner, node.Repo, node.Ref
		}
		_ = g.log.Event(context.Background(), g.name, "github.ref_lookup", details)
	}()
	u := "https://api.github.com/graphql"
	if !githubDotCom(host) {
		u = "https://" + host + "/api/graphql"
	}
	q, _ := json.Marshal(map[string]any{
		"query":     "query($id:ID!){node(id:$id){... on Ref{name prefix repository{nameWithOwner}}}}",
		"variables": map[string]string{"id": id},
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(q))
	if err != nil {
		return node, err
	}
	req.Header.Set("Content-Type", "application/json")
	if c := g.policy.Load().Credentials; c != nil && c.GitHub != nil && g.secrets != nil {
		secret, err := g.secrets.Get(c.GitHub.Secret)
		if err != nil {
			return node, fmt.Errorf("credential %s: %w", c.GitHub.Secret, err)
		}
		if err := c.GitHub.Apply(req.Header, secret); err != nil {
			return node, err
		}
	}
	res, err := g.direct.Do(req)
	if err != nil {
		return node, fmt.Errorf("POST %s: %s", u, g.redact(err.Error()))
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return node, fmt.Errorf("POST %s: %s", u, res.Status)
	}
	var ans struct {
		Data struct {
			Node *struct {
				Name       string `json:"name"`
				Prefix     string `json:"prefix"`
				Repository struct {
					NameWithOwner string `json:"nameWithOwner"`
				} `json:"repository"`
			} `json:"node"`
		} `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(&ans); err != nil {
		return node, fmt.Errorf("POST %s: %w", u, err)
	}
	n := ans.Data.Node
	if n == nil || n.Name == "" || n.Prefix == "" {
		return node, fmt.Errorf("POST %s: node %s is not a ref", u, id)
	}
	owner, repo, ok := strings.Cut(n.Repository.NameWithOwner, "/")
	if !ok {
		return node, fmt.Errorf("POST %s: node %s names no repository", u, id)
	}
	return connectors.RefNode{Owner: owner, Repo: repo, Ref: n.Prefix + n.Name}, nil
}

// githubDotCom reports whether host is one of github.com's own, whose API
// is api.github.com; any other host the github connector serves is an
// Enterprise host, with its API on the host itself.
func githubDotCom(host string) bool {
	switch host {
	case "api.github.com", "github.com", "uploads.github.com":
		return true
	}
	return false
}

// restBase is the REST API root for host.
func restBase(host string) string {
	if githubDotCom(host) {
		return "https://api.github.com"
	}
	return "https://" + host + "/api/v3"
}
