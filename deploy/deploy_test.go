// Package deploy holds the recipes that run tf serve elsewhere: the
// Dockerfile at the repository's root and kubernetes.yaml here. Docker
// cannot build on every machine the tests run on, so these tests check
// what can be checked without it: the manifest parses and hangs together,
// its policy loads, and the Dockerfile's build command builds.
package deploy

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/tameflare/tf/rules"
)

// manifest decodes every document of kubernetes.yaml, by kind.
func manifest(t *testing.T) map[string]map[string]any {
	t.Helper()
	data, err := os.ReadFile("kubernetes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	byKind := map[string]map[string]any{}
	dec := yaml.NewDecoder(bytes.NewReader(data), yaml.Strict())
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			if err.Error() == "EOF" {
				break
			}
			t.Fatalf("kubernetes.yaml: %v", err)
		}
		kind, _ := doc["kind"].(string)
		if kind == "" || doc["apiVersion"] == nil {
			t.Fatalf("a document without kind or apiVersion: %v", doc)
		}
		if _, dup := byKind[kind]; dup {
			t.Fatalf("two %s documents", kind)
		}
		byKind[kind] = doc
	}
	return byKind
}

// at walks a decoded document: keys of maps, indexes of lists.
func at(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("%v: not a map at %q", path, k)
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("%v: no item %d", path, k)
			}
			v = l[k]
		}
	}
	return v
}

func TestKubernetesManifest(t *testing.T) {
	docs := manifest(t)
	for _, k := range []string{"Namespace", "Secret", "PersistentVolumeClaim", "ConfigMap", "Deployment", "Service"} {
		if docs[k] == nil {
			t.Fatalf("kubernetes.yaml has no %s", k)
		}
	}
	dep := docs["Deployment"]
	pod := at(t, dep, "spec", "template", "spec")
	if at(t, pod, "securityContext", "runAsNonRoot") != true {
		t.Error("the pod may run as root")
	}
	if uid, _ := at(t, pod, "securityContext", "runAsUser").(uint64); uid == 0 {
		t.Error("the pod runs as uid 0")
	}
	c := at(t, pod, "containers", 0)
	if at(t, c, "securityContext", "allowPrivilegeEscalation") != false {
		t.Error("the container may escalate privileges")
	}
	if at(t, c, "readinessProbe") == nil {
		t.Error("no readiness probe")
	}
	var args []string
	for _, a := range at(t, c, "args").([]any) {
		args = append(args, a.(string))
	}
	if !slices.Contains(args, "--tls") || !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--listen=0.0.0.0:") }) {
		t.Errorf("tf serve off loopback needs --tls: args %v", args)
	}
	// TF_HOME is the mount of the claim; the policy flag the ConfigMap's.
	mounts := map[string]string{}
	for _, m := range at(t, c, "volumeMounts").([]any) {
		mounts[at(t, m, "name").(string)] = at(t, m, "mountPath").(string)
	}
	var home string
	for _, e := range at(t, c, "env").([]any) {
		if at(t, e, "name") == "TF_HOME" {
			home = at(t, e, "value").(string)
		}
	}
	if home == "" || mounts["home"] != home {
		t.Errorf("TF_HOME %q is not the volume mount %q", home, mounts["home"])
	}
	if !slices.Contains(args, "--policy="+mounts["policy"]) {
		t.Errorf("--policy does not name the policy mount %q: %v", mounts["policy"], args)
	}
	vols := map[string]any{}
	for _, v := range at(t, pod, "volumes").([]any) {
		vols[at(t, v, "name").(string)] = v
	}
	if at(t, vols["home"], "persistentVolumeClaim", "claimName") != at(t, docs["PersistentVolumeClaim"], "metadata", "name") {
		t.Error("the home volume is not the claim")
	}
	if at(t, vols["policy"], "configMap", "name") != at(t, docs["ConfigMap"], "metadata", "name") {
		t.Error("the policy volume is not the ConfigMap")
	}
	if at(t, c, "envFrom", 0, "secretRef", "name") != at(t, docs["Secret"], "metadata", "name") {
		t.Error("the container does not read the Secret")
	}
	// The Service reaches the container's port, and selects the pod.
	if at(t, docs["Service"], "spec", "ports", 0, "targetPort") != at(t, c, "ports", 0, "name") {
		t.Error("the Service's targetPort is not the container's port")
	}
	if at(t, docs["Service"], "spec", "selector", "app") != at(t, dep, "spec", "template", "metadata", "labels", "app") {
		t.Error("the Service does not select the pod")
	}
	// The policy in the ConfigMap loads, and its credential is the Secret's.
	files := fstest.MapFS{}
	for name, body := range at(t, docs["ConfigMap"], "data").(map[string]any) {
		files[name] = &fstest.MapFile{Data: []byte(body.(string))}
	}
	p, err := rules.LoadFS(files, "configmap")
	if err != nil {
		t.Fatalf("the ConfigMap's policy: %v", err)
	}
	if p.Credentials == nil || p.Credentials.GitHub.Secret != "github-token" {
		t.Fatalf("the policy names no github credential")
	}
	if at(t, docs["Secret"], "stringData", "TF_SECRET_GITHUB_TOKEN") == nil {
		t.Error("the Secret has no TF_SECRET_GITHUB_TOKEN")
	}
}

func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for l := range strings.SplitSeq(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	var froms, runtime []string
	for _, l := range lines {
		if strings.HasPrefix(l, "FROM ") {
			froms = append(froms, l)
			runtime = nil
		}
		runtime = append(runtime, l)
	}
	if len(froms) < 2 || !strings.Contains(froms[0], "golang:") || !strings.HasSuffix(froms[0], " AS build") {
		t.Fatalf("want a golang build stage and a runtime stage: %v", froms)
	}
	has := func(prefix string) string {
		for _, l := range runtime {
			if strings.HasPrefix(l, prefix) {
				return l
			}
		}
		return ""
	}
	if u := has("USER "); u == "" || regexp.MustCompile(`^USER (0|root)\b`).MatchString(u) {
		t.Errorf("the runtime stage runs as root: %q", u)
	}
	if e := has("ENTRYPOINT "); !strings.Contains(e, `"serve"`) {
		t.Errorf("the entrypoint is not tf serve: %q", e)
	}
	env, vol := has("ENV TF_HOME="), has("VOLUME ")
	if env == "" || !strings.Contains(vol, strings.TrimPrefix(env, "ENV TF_HOME=")) {
		t.Errorf("TF_HOME (%q) is not the volume (%q)", env, vol)
	}
	if c := has("CMD "); !strings.Contains(c, `"--tls"`) {
		t.Errorf("the default command listens off loopback without TLS: %q", c)
	}

	// The build stage's go build, run here as it is written there.
	var build string
	for _, l := range lines {
		if strings.HasPrefix(l, "RUN ") && strings.Contains(l, "go build") {
			build = strings.TrimPrefix(l, "RUN ")
		}
	}
	f := strings.Fields(build)
	if len(f) < 4 || f[0] != "CGO_ENABLED=0" || f[1] != "go" || f[2] != "build" {
		t.Fatalf("unexpected build command %q", build)
	}
	// -n plans the build without compiling: a build with -trimpath shares
	// no cache with the tests' builds and takes minutes on a busy machine,
	// while the plan checks the flags and that every package resolves.
	out := filepath.Join(t.TempDir(), "tf")
	for i := range f {
		if f[i] == "-o" && i+1 < len(f) {
			f[i+1] = out
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, f[1], append([]string{f[2], "-n"}, f[3:]...)...)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), f[0], "GOOS=linux")
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", build, err, b)
	}
	if !bytes.Contains(b, []byte(out)) || !bytes.Contains(b, []byte("trimpath")) {
		t.Fatalf("the plan of %q does not link %s:\n%.2000s", build, out, b)
	}
}
