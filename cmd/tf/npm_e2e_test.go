package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tameflare/tf/rules"
)

// parentNPMToken stands for a real token in the environment tf is started
// from; the governed npm must never send it.
const parentNPMToken = "npm_parentTokenMustNotReachTheRegistry01"

// npmrcAuth is the usual .npmrc of a project that publishes: the token
// comes from the environment, where tf puts its placeholder.
const npmrcAuth = "//registry.npmjs.org/:_authToken=${NPM_TOKEN}\n"

// npmFlags keep npm quiet and on the one registry: no audit, funding or
// update check requests.
var npmFlags = []string{"--registry", "https://registry.npmjs.org/", "--no-audit", "--no-fund", "--no-update-notifier"}

// npmEnv is npm's environment under tf: a private cache and user and
// global configuration files, so that nothing of the machine's npm setup
// applies, and a token in the parent environment that tf must replace.
func npmEnv(t *testing.T) []string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"npmrc-user", "npmrc-global"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return append(clientEnv(t),
		"npm_config_cache="+filepath.Join(dir, "cache"),
		"npm_config_userconfig="+filepath.Join(dir, "npmrc-user"),
		"npm_config_globalconfig="+filepath.Join(dir, "npmrc-global"),
		"npm_config_update_notifier=false",
		"NPM_TOKEN="+parentNPMToken,
	)
}

// writeFiles writes name → content files into dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// The real npm under tf run with the example policy: npm publish is
// refused as npm.package.publish before the registry sees the PUT, and npm
// shows the reason; npm install fetches a package from the fake registry
// (packument and tarball, integrity checked by npm) and it works.
func TestNPMPublishRefusedInstallAllowed(t *testing.T) {
	requireTool(t, "npm", "npm")
	requireTool(t, "node", "nodejs")
	home := t.TempDir()
	reg := newFakeRegistry(t)
	const padJS = "module.exports = (s, n, c = ' ') => String(s).padStart(n, c);\n"
	pad := reg.add(t, "tf-e2e-pad", "1.0.0", map[string]string{
		"package.json": `{"name":"tf-e2e-pad","version":"1.0.0","main":"index.js","license":"MIT"}` + "\n",
		"index.js":     padJS,
	})
	env := npmEnv(t)
	base := append([]string{"run", "--name", "e2e-npm", "--policy", absPath(t, examplePolicy)}, reg.args()...)

	// npm publish: refused.
	pub := t.TempDir()
	writeFiles(t, pub, map[string]string{
		"package.json": `{"name":"tf-e2e-demo","version":"1.0.0","description":"d","main":"index.js","license":"MIT"}` + "\n",
		"index.js":     "module.exports = 1;\n",
		".npmrc":       npmrcAuth,
	})
	r := runTFIn(t, pub, home, env, append(append(base, "--", "npm", "publish"), npmFlags...)...)
	if r.code == 0 {
		t.Fatalf("npm publish succeeded under a policy that forbids it\nstdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
	for _, want := range []string{"E403", "tf refused npm.package.publish", "Packages are published by the release pipeline, not by agents."} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("npm's error output lacks %q:\n%s", want, r.stderr)
		}
	}
	if reg.sawMethod("PUT") {
		t.Fatalf("a refused publish reached the registry: %+v", reg.received())
	}

	// npm install: allowed, from the fake registry only.
	app := t.TempDir()
	writeFiles(t, app, map[string]string{
		"package.json": `{"name":"consumer","version":"1.0.0","private":true}` + "\n",
		".npmrc":       npmrcAuth,
	})
	r = runTFIn(t, app, home, env, append(append(base, "--", "npm", "install", "tf-e2e-pad"), npmFlags...)...)
	if r.code != 0 {
		t.Fatalf("npm install: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if b, err := os.ReadFile(filepath.Join(app, "node_modules", "tf-e2e-pad", "index.js")); err != nil || string(b) != padJS {
		t.Fatalf("installed index.js = %q, %v", b, err)
	}
	var lock struct {
		Packages map[string]struct {
			Version, Resolved, Integrity string
		} `json:"packages"`
	}
	b, err := os.ReadFile(filepath.Join(app, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &lock); err != nil {
		t.Fatalf("package-lock.json: %v", err)
	}
	if got := lock.Packages["node_modules/tf-e2e-pad"]; got.Version != "1.0.0" || got.Resolved != pad.tarballURL() || got.Integrity != pad.Integrity {
		t.Errorf("package-lock.json has %+v, want version 1.0.0 from %s with %s", got, pad.tarballURL(), pad.Integrity)
	}
	// The installed package runs (node needs no network for this).
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	node := exec.CommandContext(ctx, "node", "-e", `process.stdout.write(require("tf-e2e-pad")("7", 3, "0"))`)
	node.Dir = app
	if out, err := node.CombinedOutput(); err != nil || string(out) != "007" {
		t.Errorf("node using the installed package: %q, %v", out, err)
	}
	for _, want := range []string{"/tf-e2e-pad", "/tf-e2e-pad/-/tf-e2e-pad-1.0.0.tgz"} {
		if !reg.sawRequest("GET", want) {
			t.Errorf("the registry never received GET %s: %+v", want, reg.received())
		}
	}

	for _, req := range reg.received() {
		// No credential is configured: the registry sees the child's
		// placeholder, never the token tf was started with.
		if strings.Contains(req.Authorization, parentNPMToken) || req.Authorization != "" {
			t.Errorf("%s %s reached the registry with Authorization %q", req.Method, req.Path, req.Authorization)
		}
	}
	if u := reg.unexpectedRequests(); len(u) != 0 {
		t.Errorf("the registry could not answer: %q", u)
	}

	recs := decisions(t, home)
	statuses := outcomeStatuses(t, home)
	for _, rec := range recs {
		// Offline and on one registry: every request went to the fake.
		if rec.Gateway != "e2e-npm" || rec.Action.Connector != "npm" || rec.Action.Request.Host != registryHost {
			t.Errorf("record %s: %s gateway %q connector %q host %q", rec.RequestID, rec.Action.Type, rec.Gateway, rec.Action.Connector, rec.Action.Request.Host)
		}
	}
	publishes := recordsOf(recs, "npm.package.publish")
	if len(publishes) != 1 {
		t.Fatalf("%d npm.package.publish records, want 1", len(publishes))
	}
	p := publishes[0]
	if p.Decision.Effect != rules.Deny || p.Decision.Rule != "no-npm-publish" {
		t.Errorf("npm.package.publish decided %s by %q", p.Decision.Effect, p.Decision.Rule)
	}
	if p.Action.Resource["package"] != "tf-e2e-demo" || p.Action.Params["version"] != "1.0.0" || p.Action.Request.Method != "PUT" {
		t.Errorf("npm.package.publish action: %+v", p.Action)
	}
	if s := statuses[p.RequestID]; s != 403 {
		t.Errorf("npm.package.publish outcome status %d, want 403", s)
	}

	var tarball bool
	for _, g := range recordsOf(recs, "npm.package.get") {
		if g.Decision.Effect != rules.Allow || g.Decision.Rule != "npm-installs" {
			t.Errorf("npm.package.get of %s decided %s by %q", g.Action.Request.Path, g.Decision.Effect, g.Decision.Rule)
		}
		if g.Action.Resource["package"] == "tf-e2e-pad" && g.Action.Params["version"] == "1.0.0" {
			tarball = true
			if s := statuses[g.RequestID]; s != 200 {
				t.Errorf("tarball fetch outcome status %d, want 200", s)
			}
		}
	}
	if !tarball {
		t.Errorf("no npm.package.get of tf-e2e-pad 1.0.0 (the tarball) in the audit log")
	}
	if n := len(recs) - len(publishes) - len(recordsOf(recs, "npm.package.get")); n != 0 {
		t.Errorf("%d records of other actions in the audit log", n)
	}
}
