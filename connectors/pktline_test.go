package connectors

import (
	"bytes"
	"compress/gzip"
	"errors"
	"strings"
	"testing"
)

const (
	oidA  = "1111111111111111111111111111111111111111"
	oidB  = "2222222222222222222222222222222222222222"
	oidZ  = "0000000000000000000000000000000000000000"
	caps  = "report-status report-status-v2 side-band-64k quiet object-format=sha1 agent=git/2.39.5"
	pack0 = "PACK\x00\x00\x00\x02"
)

func pkts(lines ...string) []byte {
	var b []byte
	for _, l := range lines {
		if l == "0000" {
			b = append(b, "0000"...)
			continue
		}
		b = appendPkt(b, []byte(l))
	}
	return b
}

func TestParsePushRequest(t *testing.T) {
	body := pkts(
		oidA+" "+oidB+" refs/heads/main\x00"+caps+" push-options",
		oidZ+" "+oidB+" refs/heads/feature/x\n",
		oidA+" "+oidZ+" refs/tags/v1",
		"0000",
		"ci.skip",
		"reviewer=ann",
		"0000",
	)
	body = append(body, pack0...)
	p, err := ParsePushRequest(body)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Updates) != 3 || p.Updates[1].Ref != "refs/heads/feature/x" || !p.Updates[1].Create() || !p.Updates[2].Delete() || p.Updates[0].Create() || p.Updates[0].Delete() {
		t.Errorf("updates = %+v", p.Updates)
	}
	if !p.HasCapability("side-band-64k") || !p.HasCapability("object-format") || p.HasCapability("side-band") {
		t.Errorf("capabilities = %v", p.Capabilities)
	}
	if strings.Join(p.Options, ",") != "ci.skip,reviewer=ann" {
		t.Errorf("options = %v", p.Options)
	}
}

func TestParsePushRequestShallowAndSHA256(t *testing.T) {
	a256 := strings.Repeat("a", 64)
	z256 := strings.Repeat("0", 64)
	p, err := ParsePushRequest(pkts("shallow "+oidA, z256+" "+a256+" refs/heads/x\x00report-status object-format=sha256", "0000"))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Shallow) != 1 || len(p.Updates) != 1 || !p.Updates[0].Create() {
		t.Errorf("push = %+v", p)
	}
}

func TestParsePushRequestErrors(t *testing.T) {
	full := pkts(oidA+" "+oidB+" refs/heads/main\x00"+caps, "0000")
	cases := map[string]struct {
		body []byte
		want string
	}{
		"empty":                 {nil, "ends before its flush"},
		"truncated header":      {full[:2], "ends before its flush"},
		"truncated line":        {full[:20], "ends before its flush"},
		"missing flush":         {full[:len(full)-4], "ends before its flush"},
		"garbled length":        {append([]byte("00zz"), full[4:]...), "garbled pkt-line length"},
		"length three":          {[]byte("0003"), "invalid pkt-line length 3"},
		"oversized":             {append([]byte("fff5"), bytes.Repeat([]byte("a"), 70000)...), "over the limit"},
		"no command":            {pkts("0000"), "no command"},
		"garbled command":       {pkts("hello world\x00caps", "0000"), "garbled command"},
		"short oid":             {pkts("1234 "+oidB+" refs/heads/main", "0000"), "garbled command"},
		"bad ref":               {pkts(oidA + " " + oidB + " refs/heads/a..b"), "bad ref name"},
		"ref outside refs":      {pkts(oidA+" "+oidB+" HEAD", "0000"), "bad ref name"},
		"caps twice":            {pkts(oidA+" "+oidB+" refs/heads/a\x00x", oidA+" "+oidB+" refs/heads/b\x00y", "0000"), "capabilities after"},
		"push cert":             {pkts("push-cert\x00"+caps, "0000"), "signed pushes"},
		"delim in commands":     {append(pkts(oidA+" "+oidB+" refs/heads/a"), "0001"...), "unexpected special packet"},
		"options without flush": {pkts(oidA+" "+oidB+" refs/heads/a\x00push-options", "0000", "opt"), "reading push options"},
		"shallow only":          {pkts("shallow "+oidA, "0000"), "shallow lines but no command"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParsePushRequest(c.body)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error = %v, want %q", err, c.want)
			}
		})
	}
	if _, err := ParsePushRequest(full[:len(full)-1]); !errors.Is(err, ErrPktTruncated) {
		t.Errorf("truncated flush: %v is not ErrPktTruncated", err)
	}
}

func receivePackRequest(body []byte, truncated bool) *Request {
	r := newRequest("POST", "github.com", "/acme/app.git/git-receive-pack", "", body, truncated)
	r.HTTP.Header.Set("Content-Type", "application/x-git-receive-pack-request")
	return r
}

func TestClassifyPush(t *testing.T) {
	reg := testRegistry(t)
	body := append(pkts(
		oidA+" "+oidB+" refs/heads/main\x00"+caps,
		oidZ+" "+oidB+" refs/tags/v2",
		oidA+" "+oidZ+" refs/heads/old",
		oidA+" "+oidZ+" refs/tags/v1",
		oidA+" "+oidB+" refs/notes/commits",
		"0000"), pack0...)
	acts, err := reg.Classify(receivePackRequest(body, true))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ typ, key, val string }{
		{"github.repo.push", "branch", "main"},
		{"github.repo.push", "tag", "v2"},
		{"github.branch.delete", "branch", "old"},
		{"github.tag.delete", "tag", "v1"},
		{"github.repo.push", "ref", "refs/notes/commits"},
	}
	if len(acts) != len(want) {
		t.Fatalf("got %d actions: %+v", len(acts), acts)
	}
	for i, w := range want {
		a := acts[i]
		if a.Type != w.typ || a.Params[w.key] != w.val || a.Resource["owner"] != "acme" || a.Resource["repo"] != "app" {
			t.Errorf("action %d = %s %v %v, want %s %s=%s", i, a.Type, a.Resource, a.Params, w.typ, w.key, w.val)
		}
	}
	if acts[1].Params["create"] != true || acts[2].Params["delete"] != true || acts[0].Params["old"] != oidA || acts[0].Params["new"] != oidB {
		t.Errorf("create/delete/old/new wrong: %+v", acts)
	}
	// The REST deletion and the push deletion carry the same names.
	rest, err := reg.Classify(newRequest("DELETE", "api.github.com", "/repos/acme/app/git/refs/heads/old", "", nil, false))
	if err != nil {
		t.Fatal(err)
	}
	if rest[0].Type != acts[2].Type || rest[0].Params["branch"] != acts[2].Params["branch"] || rest[0].Params["ref"] != acts[2].Params["ref"] || rest[0].Resource["repo"] != acts[2].Resource["repo"] {
		t.Errorf("REST %+v and push %+v deletions differ", rest[0], acts[2])
	}
}

func TestClassifyPushErrors(t *testing.T) {
	reg := testRegistry(t)
	// Commands that do not fit in the prefix.
	big := pkts(oidA + " " + oidB + " refs/heads/main\x00" + caps)
	for i := 0; i < 100; i++ {
		big = append(big, pkts(oidZ+" "+oidB+" refs/heads/b"+strings.Repeat("x", i))...)
	}
	if _, err := reg.Classify(receivePackRequest(big[:1000], true)); err == nil || !strings.Contains(err.Error(), "inspected prefix") {
		t.Errorf("truncated commands: %v", err)
	}
	if _, err := reg.Classify(receivePackRequest([]byte("garbage!"), false)); err == nil || !strings.Contains(err.Error(), "garbled") {
		t.Errorf("garbage: %v", err)
	}
	r := receivePackRequest([]byte("x"), false)
	r.HTTP.Header.Set("Content-Encoding", "br")
	if _, err := reg.Classify(r); err == nil || !strings.Contains(err.Error(), "Content-Encoding") {
		t.Errorf("brotli: %v", err)
	}
	r = receivePackRequest([]byte("not gzip"), false)
	r.HTTP.Header.Set("Content-Encoding", "gzip")
	if _, err := reg.Classify(r); err == nil || !strings.Contains(err.Error(), "gzip") {
		t.Errorf("bad gzip: %v", err)
	}
	get := newRequest("GET", "github.com", "/acme/app.git/git-receive-pack", "", nil, false)
	if _, err := reg.Classify(get); err == nil {
		t.Error("GET git-receive-pack was classified")
	}
}

func TestClassifyPushGzip(t *testing.T) {
	reg := testRegistry(t)
	plain := append(pkts(oidA+" "+oidB+" refs/heads/main\x00"+caps, "0000"), bytes.Repeat([]byte("P"), 100000)...)
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	zw.Write(plain)
	zw.Close()
	// Only a prefix of the compressed body was peeked.
	prefix := zb.Bytes()[:min(300, zb.Len())]
	r := receivePackRequest(prefix, true)
	r.HTTP.Header.Set("Content-Encoding", "gzip")
	acts, err := reg.Classify(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(acts) != 1 || acts[0].Params["branch"] != "main" {
		t.Errorf("actions = %+v", acts)
	}
}

// demux reads a side-band stream: channel 1 data and channel 2 progress.
func demux(t *testing.T, body []byte) (data, progress []byte) {
	t.Helper()
	p := &pktReader{buf: body}
	for {
		line, kind, err := p.next()
		if err != nil {
			t.Fatalf("side-band stream: %v", err)
		}
		if kind == pktFlush {
			if p.off != len(body) {
				t.Fatalf("bytes after the final flush")
			}
			return
		}
		switch line[0] {
		case 1:
			data = append(data, line[1:]...)
		case 2:
			progress = append(progress, line[1:]...)
		default:
			t.Fatalf("unexpected band %d", line[0])
		}
	}
}

func TestRefuseReceivePack(t *testing.T) {
	gh, err := NewGitHub(GitHubOptions{})
	if err != nil {
		t.Fatal(err)
	}
	body := pkts(oidA+" "+oidB+" refs/heads/main\x00"+caps, oidZ+" "+oidB+" refs/heads/feature", "0000")
	r := receivePackRequest(body, true)
	acts, err := gh.Classify(r)
	if err != nil {
		t.Fatal(err)
	}
	status, h, out, ok := gh.Refuse(r, acts[:1], "protect-main", "Protected branches\nchange through PRs.", "req-1")
	if !ok || status != 200 || h.Get("Content-Type") != "application/x-git-receive-pack-result" {
		t.Fatalf("Refuse = %d %v %v", status, h, ok)
	}
	data, progress := demux(t, out)
	wantReport := string(pkts("unpack ok\n",
		"ng refs/heads/main refused by rule protect-main: Protected branches change through PRs.\n",
		"ng refs/heads/feature not pushed: another ref of this push was refused\n", "0000"))
	if string(data) != wantReport {
		t.Errorf("report = %q\nwant     %q", data, wantReport)
	}
	if !strings.Contains(string(progress), "tf: refused by rule protect-main") || !strings.Contains(string(progress), "req-1") {
		t.Errorf("progress = %q", progress)
	}

	// Without side-band the report is sent bare.
	body = pkts(oidA+" "+oidB+" refs/heads/main\x00report-status", "0000")
	_, _, out, ok = gh.Refuse(receivePackRequest(body, false), nil, "r", "why", "")
	if !ok || string(out) != string(pkts("unpack ok\n", "ng refs/heads/main refused by rule r: why\n", "0000")) {
		t.Errorf("plain report = %q %v", out, ok)
	}
	// Without report-status there is nothing the client would read.
	body = pkts(oidA+" "+oidB+" refs/heads/main\x00side-band-64k", "0000")
	if _, _, _, ok := gh.Refuse(receivePackRequest(body, false), nil, "r", "why", ""); ok {
		t.Error("Refuse answered a client that asked for no report")
	}
	// A ref advertisement gets an ERR packet.
	status, h, out, ok = gh.Refuse(newRequest("GET", "github.com", "/acme/app.git/info/refs", "service=git-receive-pack", nil, false), nil, "r", "why", "")
	if !ok || status != 200 || h.Get("Content-Type") != "application/x-git-receive-pack-advertisement" || string(out) != string(pkts("ERR tf: refused by rule r: why\n")) {
		t.Errorf("info/refs refusal = %d %v %q %v", status, h, out, ok)
	}
	// Other requests get the plain refusal.
	for _, r := range []*Request{
		newRequest("GET", "github.com", "/acme/app.git/info/refs", "", nil, false),
		newRequest("GET", "api.github.com", "/repos/acme/app", "", nil, false),
		newRequest("GET", "github.com", "/acme/app/pulls", "", nil, false),
	} {
		if _, _, _, ok := gh.Refuse(r, nil, "r", "why", ""); ok {
			t.Errorf("Refuse answered %s", r.HTTP.URL)
		}
	}
}
