package connectors

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/tameflare/tf/rules"
)

// maxInflatedPrefix bounds how much of a gzip request body is inflated to
// read the push commands, so that a small compressed prefix cannot expand
// without end.
const maxInflatedPrefix = 4 << 20

// gitPath splits /{owner}/{repo}(.git)?/{rest} for the git smart HTTP
// endpoints; rest is info/refs, git-upload-pack or git-receive-pack.
func gitPath(path string) (owner, repo, rest string, ok bool) {
	p := strings.TrimPrefix(path, "/")
	owner, p, ok1 := strings.Cut(p, "/")
	repo, rest, ok2 := strings.Cut(p, "/")
	if !ok1 || !ok2 || owner == "" || repo == "" {
		return "", "", "", false
	}
	switch rest {
	case "info/refs", "git-upload-pack", "git-receive-pack":
	default:
		return "", "", "", false
	}
	owner, repo = repoName(unescapePath(owner), unescapePath(repo))
	return owner, repo, rest, true
}

// classifyGit classifies git smart HTTP requests; ok is false for other
// paths.
func (g *GitHub) classifyGit(r *Request, path string) ([]rules.Action, bool, error) {
	owner, repo, rest, ok := gitPath(path)
	if !ok {
		return nil, false, nil
	}
	res := map[string]string{"owner": owner, "repo": repo}
	method := r.HTTP.Method
	switch {
	case rest == "info/refs" && (method == "GET" || method == "HEAD"):
		svc := r.HTTP.URL.Query().Get("service")
		if svc != "" && svc != "git-upload-pack" && svc != "git-receive-pack" {
			return nil, true, fmt.Errorf("git info/refs: unknown service %q", svc)
		}
		a := rules.Action{Connector: "github", Type: "github.repo.pull", Resource: res}
		if svc != "" {
			a.Params = map[string]any{"service": svc}
		}
		return []rules.Action{a}, true, nil
	case rest == "git-upload-pack" && method == "POST":
		return []rules.Action{{Connector: "github", Type: "github.repo.pull", Resource: res}}, true, nil
	case rest == "git-receive-pack" && method == "POST":
		push, err := parsePushBody(r)
		if err != nil {
			return nil, true, fmt.Errorf("git push to %s/%s: %w", owner, repo, err)
		}
		return pushActions(owner, repo, push), true, nil
	}
	return nil, true, fmt.Errorf("git smart HTTP: %s is not allowed on %s", method, rest)
}

// parsePushBody reads the push commands from the peeked body, inflating it
// first when git sent it gzip-compressed.
func parsePushBody(r *Request) (*PushRequest, error) {
	body := r.Body
	if enc := strings.ToLower(strings.TrimSpace(r.HTTP.Header.Get("Content-Encoding"))); enc != "" && enc != "identity" {
		if enc != "gzip" && enc != "x-gzip" {
			return nil, fmt.Errorf("unsupported request Content-Encoding %q", enc)
		}
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("inflating gzip request body: %w", err)
		}
		// A truncated prefix ends with io.ErrUnexpectedEOF: what was
		// inflated so far is all there is to read, and the parser says
		// whether the commands are complete in it.
		inflated, err := io.ReadAll(io.LimitReader(zr, maxInflatedPrefix))
		if err != nil && err != io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("inflating gzip request body: %w", err)
		}
		body = inflated
	}
	push, err := ParsePushRequest(body)
	if err != nil {
		if r.Truncated {
			return nil, fmt.Errorf("%w (the inspected prefix of the body is %d bytes)", err, len(r.Body))
		}
		return nil, err
	}
	return push, nil
}

// pushActions turns each ref update into an action. A deletion has the same
// name and params as the REST deletion of that ref.
func pushActions(owner, repo string, push *PushRequest) []rules.Action {
	acts := make([]rules.Action, 0, len(push.Updates))
	for _, u := range push.Updates {
		a := rules.Action{
			Connector: "github",
			Type:      "github.repo.push",
			Resource:  map[string]string{"owner": owner, "repo": repo},
			Params: map[string]any{
				"ref":    u.Ref,
				"old":    u.Old,
				"new":    u.New,
				"create": u.Create(),
				"delete": u.Delete(),
			},
		}
		if b, ok := strings.CutPrefix(u.Ref, "refs/heads/"); ok {
			a.Params["branch"] = b
			if u.Delete() {
				a.Type = "github.branch.delete"
			}
		} else if t, ok := strings.CutPrefix(u.Ref, "refs/tags/"); ok {
			a.Params["tag"] = t
			if u.Delete() {
				a.Type = "github.tag.delete"
			}
		}
		if len(push.Options) > 0 {
			a.Params["push_options"] = append([]string(nil), push.Options...)
		}
		acts = append(acts, a)
	}
	return acts
}

// Refuse answers refused git smart HTTP requests in git's protocol, so that
// git shows the rule and reason. A refused push gets a report-status that
// rejects every ref: git prints
// "! [remote rejected] main -> main (refused by rule X: reason)". The refs
// of actions are the refused ones; the other refs of the push are rejected
// too, because a push is forwarded whole or not at all. A refused ref
// advertisement or fetch gets an ERR packet: git prints
// "fatal: remote error: tf: refused by rule X: reason". Other requests get
// the gateway's plain refusal (ok false).
func (g *GitHub) Refuse(r *Request, actions []rules.Action, rule, reason, requestID string) (int, http.Header, []byte, bool) {
	if r == nil || r.HTTP == nil || r.HTTP.URL == nil {
		return 0, nil, nil, false
	}
	_, _, rest, ok := gitPath(r.escapedPath())
	if !ok {
		return 0, nil, nil, false
	}
	msg := refusalText(rule, reason)
	switch {
	case rest == "info/refs" && r.HTTP.Method == "GET":
		svc := r.HTTP.URL.Query().Get("service")
		if svc != "git-upload-pack" && svc != "git-receive-pack" {
			return 0, nil, nil, false
		}
		return gitError("application/x-"+svc+"-advertisement", msg, requestID)
	case rest == "git-upload-pack" && r.HTTP.Method == "POST":
		return gitError("application/x-git-upload-pack-result", msg, requestID)
	case rest != "git-receive-pack" || r.HTTP.Method != "POST":
		return 0, nil, nil, false
	}
	push, err := parsePushBody(r)
	if err != nil || !(push.HasCapability("report-status") || push.HasCapability("report-status-v2")) {
		// Without a report the client would take silence for success.
		return 0, nil, nil, false
	}
	refused := map[string]bool{}
	for _, a := range actions {
		if ref, ok := a.Params["ref"].(string); ok {
			refused[ref] = true
		}
	}
	var report []byte
	report = appendPkt(report, []byte("unpack ok\n"))
	for _, u := range push.Updates {
		why := msg
		if len(refused) > 0 && !refused[u.Ref] {
			why = "not pushed: another ref of this push was refused"
		}
		report = appendPkt(report, []byte("ng "+u.Ref+" "+why+"\n"))
	}
	report = append(report, "0000"...)

	var body []byte
	chunk := 0
	switch {
	case push.HasCapability("side-band-64k"):
		chunk = pktMaxLen - 5
	case push.HasCapability("side-band"):
		chunk = 1000 - 5
	}
	if chunk == 0 {
		body = report
	} else {
		progress := "tf: " + msg
		if requestID != "" {
			progress += " [request " + oneLine(requestID, 64) + "]"
		}
		body = appendPkt(body, []byte("\x02"+progress+"\n"))
		for len(report) > 0 {
			n := min(chunk, len(report))
			body = appendPkt(body, append([]byte{1}, report[:n]...))
			report = report[n:]
		}
		body = append(body, "0000"...)
	}
	h := http.Header{}
	h.Set("Content-Type", "application/x-git-receive-pack-result")
	h.Set("Cache-Control", "no-cache")
	return http.StatusOK, h, body, true
}

// refusalText is the one-line reason shown by git.
func refusalText(rule, reason string) string {
	msg := "refused"
	if rule != "" {
		msg += " by rule " + oneLine(rule, 100)
	}
	if reason != "" {
		msg += ": " + oneLine(reason, 300)
	}
	return msg
}

// oneLine flattens s to one printable line of at most n bytes: a report
// line with a newline in it would end early and garble the report.
func oneLine(s string, n int) string {
	var b strings.Builder
	space := false
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			c = ' '
		}
		if c == ' ' {
			if space {
				continue
			}
			space = true
		} else {
			space = false
		}
		if b.Len()+len(string(c)) > n {
			break
		}
		b.WriteRune(c)
	}
	return strings.TrimSpace(b.String())
}

// gitError is a response whose only packet is an ERR line, which git
// clients print as "remote error: ..." and stop.
func gitError(contentType, msg, requestID string) (int, http.Header, []byte, bool) {
	line := "ERR tf: " + msg
	if requestID != "" {
		line += " [request " + oneLine(requestID, 64) + "]"
	}
	h := http.Header{}
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-cache")
	return http.StatusOK, h, appendPkt(nil, []byte(line+"\n")), true
}
