package keyring

import (
	"encoding/json"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSensitiveHeader(t *testing.T) {
	yes := []string{"Authorization", "proxy-authorization", "Cookie", "Set-Cookie", "X-Api-Key", "X-Auth-Token",
		"X-Amz-Security-Token", "PRIVATE-TOKEN", "X-Goog-Api-Key", "X-Hub-Signature-256", "X-Session-Id",
		"X-Client-Secret", "X-Password", "Dpop", "X-Vendor-Auth"}
	no := []string{"Accept", "Content-Type", "User-Agent", "X-GitHub-Api-Version", "Host", "If-None-Match", "X-Request-Id"}
	for _, h := range yes {
		if !SensitiveHeader(h) {
			t.Errorf("%s should be sensitive", h)
		}
	}
	for _, h := range no {
		if SensitiveHeader(h) {
			t.Errorf("%s should not be sensitive", h)
		}
	}
}

func TestSecretKey(t *testing.T) {
	yes := []string{"token", "api_key", "apiKey", "APIKey", "api-key", "x-api-key", "apikey", "private_key", "privateKey",
		"access_token", "accessToken", "client_secret", "clientSecret", "authorization", "Authorization", "password",
		"passwd", "pwd", "db_password", "secret", "secrets", "key", "auth", "refreshToken", "id_token", "ssh_key",
		"session_id", "sessionId", "cookie", "otp", "signature", "passphrase", "credentials", "AWS_SECRET_ACCESS_KEY", "npmAuthToken"}
	no := []string{"keys", "key_id", "keyId", "public_key", "sort_key", "partitionKey", "monkey", "author", "max_tokens",
		"tokenizer", "branch", "owner", "repo", "body", "title", "number", "name", "", "keyboard", "sessions"}
	for _, k := range yes {
		if !SecretKey(k) {
			t.Errorf("%q should be secret", k)
		}
	}
	for _, k := range no {
		if SecretKey(k) {
			t.Errorf("%q should not be secret", k)
		}
	}
}

func TestSplitWords(t *testing.T) {
	for in, want := range map[string][]string{
		"apiKey": {"api", "key"}, "APIKey": {"api", "key"}, "x-api-key": {"x", "api", "key"},
		"access_token": {"access", "token"}, "HTTPServer2Key": {"http", "server2", "key"}, "": nil,
	} {
		if got := splitWords(in); !reflect.DeepEqual(got, want) {
			t.Errorf("splitWords(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSecretValue(t *testing.T) {
	yes := []string{"ghp_0123456789abcdefghijABCDEFGHIJ012345", "github_pat_11ABCDEFG0123456789_abcdef", "npm_abcdefghijklmnopqrstuvwxyz0123456789",
		"Bearer abc.def.ghi", "bearer sometoken1", "Basic dXNlcjpwYXNz", "xoxb-1234567890-abcdef",
		"AKIAIOSFODNN7EXAMPLE", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
		"-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----"}
	no := []string{"main", "ghp_short", "npm_config_cache is where", "Bearer of bad news today", "basic", "hello world",
		"-----BEGIN CERTIFICATE-----", "eyJ not a jwt", ""}
	for _, v := range yes {
		if !SecretValue(v) {
			t.Errorf("%q should look secret", v)
		}
	}
	for _, v := range no {
		if SecretValue(v) {
			t.Errorf("%q should not look secret", v)
		}
	}
}

func TestRedactParams(t *testing.T) {
	in := map[string]any{
		"branch":   "main",
		"number":   float64(42),
		"draft":    true,
		"nothing":  nil,
		"apiKey":   "k-123",
		"password": map[string]any{"nested": "whole value goes"},
		"keys":     []any{"a", "b"},
		"headers":  map[string]any{"Authorization": "Bearer x", "Accept": "json"},
		"config": map[string]any{
			"db":    map[string]any{"host": "h", "db_password": "p", "port": json.Number("5432")},
			"items": []any{map[string]any{"client_secret": "s", "id": "1"}, "ghp_0123456789abcdefghijABCDEFGHIJ012345", float64(3)},
		},
		"labels":     map[string]string{"token": "t", "color": "red"},
		"list":       []string{"x", "Bearer abcdefghijk"},
		"unknown":    struct{ A string }{"x"},
		"max_tokens": float64(1000),
	}
	orig, _ := json.Marshal(in["config"])
	want := map[string]any{
		"branch":   "main",
		"number":   float64(42),
		"draft":    true,
		"nothing":  nil,
		"apiKey":   Redacted,
		"password": Redacted,
		"keys":     []any{"a", "b"},
		"headers":  map[string]any{"Authorization": Redacted, "Accept": "json"},
		"config": map[string]any{
			"db":    map[string]any{"host": "h", "db_password": Redacted, "port": json.Number("5432")},
			"items": []any{map[string]any{"client_secret": Redacted, "id": "1"}, Redacted, float64(3)},
		},
		"labels":     map[string]any{"token": Redacted, "color": "red"},
		"list":       []any{"x", Redacted},
		"unknown":    Redacted,
		"max_tokens": float64(1000),
	}
	got := RedactParams(in)
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", " ")
		t.Fatalf("RedactParams:\n%s", g)
	}
	// A deep copy: the input is untouched, and changing the output does not
	// reach it.
	after, _ := json.Marshal(in["config"])
	if string(orig) != string(after) {
		t.Fatal("input changed")
	}
	got["config"].(map[string]any)["db"].(map[string]any)["host"] = "changed"
	if in["config"].(map[string]any)["db"].(map[string]any)["host"] != "h" {
		t.Fatal("output shares maps with the input")
	}
	if RedactParams(nil) != nil {
		t.Fatal("nil in, nil out")
	}
}

func TestRedactParamsCycleAndDepth(t *testing.T) {
	cyc := map[string]any{"a": "x"}
	cyc["self"] = cyc
	got := RedactParams(cyc)
	depth := 0
	for v := any(got); ; depth++ {
		m, ok := v.(map[string]any)
		if !ok {
			if v != Redacted {
				t.Fatalf("cycle ended in %v", v)
			}
			break
		}
		v = m["self"]
	}
	if depth == 0 || depth > maxDepth+1 {
		t.Fatalf("depth %d", depth)
	}
}

// TestRedactParamsShares checks that clean params come back as they are,
// without allocating, and that anything the copy would change is copied.
func TestRedactParamsShares(t *testing.T) {
	p := map[string]any{"path": "/home/me/a.go", "n": 3, "opts": []any{map[string]any{"k": "v", "on": true}}}
	if got := RedactParams(p); reflect.ValueOf(got).UnsafePointer() != reflect.ValueOf(p).UnsafePointer() {
		t.Fatal("clean params were copied")
	}
	if n := testing.AllocsPerRun(100, func() { RedactParams(p) }); n != 0 {
		t.Fatalf("%v allocations for clean params", n)
	}
	deep := map[string]any{"v": "x"}
	for range maxDepth + 2 {
		deep = map[string]any{"d": deep}
	}
	for _, dirty := range []map[string]any{
		{"a": map[string]any{"api_key": "k"}},
		{"a": []any{"ghp_0123456789abcdefghijABCDEFGHIJ012345"}},
		{"a": map[string]string{"x": "y"}},
		{"a": []string{"x"}},
		{"a": struct{}{}},
		deep,
	} {
		got := RedactParams(dirty)
		if reflect.ValueOf(got).UnsafePointer() == reflect.ValueOf(dirty).UnsafePointer() {
			t.Fatalf("%v came back uncopied", dirty)
		}
		if want := redactMap(dirty, 0); !reflect.DeepEqual(got, want) {
			t.Fatalf("RedactParams(%v) = %v, want %v", dirty, got, want)
		}
	}
}

// TestRedactRawJSON checks params kept as JSON: left as they are when
// clean, decoded and redacted when a secret is in them.
func TestRedactRawJSON(t *testing.T) {
	clean := json.RawMessage(`[{"name":"option-1","value":7,"enabled":true}]`)
	p := map[string]any{"path": "/a", "options": clean}
	if got := RedactParams(p); reflect.ValueOf(got).UnsafePointer() != reflect.ValueOf(p).UnsafePointer() {
		t.Fatal("clean params with a raw value were copied")
	}
	if n := testing.AllocsPerRun(100, func() { RedactParams(p) }); n != 0 {
		t.Fatalf("%v allocations for clean raw params", n)
	}
	for _, tc := range []struct{ raw, secret, gone string }{
		{`{"api_key":"k-123"}`, "", "k-123"},
		{`{"api\u005fkey":"k-123"}`, "", "k-123"},
		{`["ghp_0123456789abcdefghijABCDEFGHIJ012345"]`, "", "ghp_0123456789abcdefghijABCDEFGHIJ012345"},
		{`{"note":"use s3cr3t\u002dvalue-123 here"}`, "s3cr3t-value-123", "s3cr3t"},
	} {
		r := NewRedactor(tc.secret)
		out, err := json.Marshal(r.Params(map[string]any{"v": json.RawMessage(tc.raw)}))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(out), tc.gone) || !strings.Contains(string(out), Redacted) {
			t.Errorf("%s: redacted to %s", tc.raw, out)
		}
	}
}

func TestRedactor(t *testing.T) {
	r := NewRedactor("s3cr3t", "", PlaceholderValue)
	r.Add("s3cr3t-longer", "a b/c")
	cases := map[string]string{
		"token s3cr3t in text":                   "token [redacted] in text",
		"s3cr3t-longer first":                    "[redacted] first",
		"url ?t=" + url.QueryEscape("a b/c"):     "url ?t=[redacted]",
		"path /" + url.PathEscape("a b/c"):       "path /[redacted]",
		"git " + GitBasicHeader("s3cr3t"):        "git Basic [redacted]",
		"GH_TOKEN=" + PlaceholderValue + " kept": "GH_TOKEN=" + PlaceholderValue + " kept",
		"nothing here":                           "nothing here",
	}
	for in, want := range cases {
		if got := r.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
	if got := NewRedactor("a").Redact("[redacted] a"); got != "[redacted] [redacted]" {
		t.Fatalf("a short secret mangled the marker: %q", got)
	}
	if got := NewRedactor().Redact("s3cr3t"); got != "s3cr3t" {
		t.Fatalf("empty redactor changed text: %q", got)
	}
	p := r.Params(map[string]any{"body": "leaked s3cr3t here", "list": []any{"s3cr3t"}, "apiKey": "x", "n": float64(1)})
	want := map[string]any{"body": "leaked [redacted] here", "list": []any{Redacted}, "apiKey": Redacted, "n": float64(1)}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("Params = %v", p)
	}
}

func FuzzRedactParams(f *testing.F) {
	f.Add([]byte(`{"apiKey":"x","a":{"password":"p","b":["ghp_0123456789abcdefghijABCDEFGHIJ012345"]}}`), "p")
	f.Add([]byte(`{"k":[1,2,{"token":null}]}`), "")
	f.Add([]byte(`[{"key":"option-1","value":7},{"api\u005fkey":"x"}]`), "")
	f.Add([]byte(`{"a":"s3cr3t\u002dvalue-123 here"}`), "s3cr3t-value-123")
	f.Add([]byte(`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["deep"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`), "")
	f.Fuzz(func(t *testing.T, doc []byte, secret string) {
		var m map[string]any
		if json.Unmarshal(doc, &m) != nil {
			m = nil
		}
		// A value kept as JSON is redacted exactly as its decoded form.
		// Messages with invalid UTF-8 never get this far (the MCP decoder
		// refuses them), and secrets are text.
		if json.Valid(doc) && utf8.Valid(doc) && utf8.ValidString(secret) {
			var dec any
			_ = json.Unmarshal(doc, &dec)
			r := NewRedactor(secret)
			for _, redact := range []func(map[string]any) map[string]any{RedactParams, r.Params} {
				raw, _ := json.Marshal(redact(map[string]any{"v": json.RawMessage(doc)}))
				full, _ := json.Marshal(redact(map[string]any{"v": dec}))
				var a, b any
				_ = json.Unmarshal(raw, &a)
				_ = json.Unmarshal(full, &b)
				if !reflect.DeepEqual(a, b) {
					t.Fatalf("kept as JSON: %s\ndecoded: %s", raw, full)
				}
			}
		}
		if m == nil {
			return
		}
		// Returning params itself when clean must equal the full copy.
		if got, full := RedactParams(m), redactMap(m, 0); !reflect.DeepEqual(got, full) {
			t.Fatalf("RedactParams = %v, the full copy is %v", got, full)
		}
		r := NewRedactor(secret)
		out := r.Params(m)
		b, err := json.Marshal(out)
		if err != nil {
			t.Fatalf("output not encodable: %v", err)
		}
		if len(secret) >= 4 && !strings.Contains(Redacted, secret) && strings.Contains(string(b), secret) {
			// JSON escaping may change how the secret is spelled; check
			// the decoded strings instead.
			var back any
			_ = json.Unmarshal(b, &back)
			walk(back, func(s string) {
				if strings.Contains(s, secret) && !strings.Contains(Redacted, secret) {
					t.Fatalf("secret %q survived in %q", secret, s)
				}
			})
		}
		for k, v := range out {
			if SecretKey(k) && v != Redacted {
				t.Fatalf("key %q kept %v", k, v)
			}
		}
	})
}

func walk(v any, f func(string)) {
	switch x := v.(type) {
	case string:
		f(x)
	case map[string]any:
		for k, e := range x {
			f(k)
			walk(e, f)
		}
	case []any:
		for _, e := range x {
			walk(e, f)
		}
	}
}

func FuzzSecretKey(f *testing.F) {
	for _, s := range []string{"apiKey", "x-api-key", "ÄpiKey", "max_tokens", "HTTPKey"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		words := splitWords(key)
		for _, w := range words {
			if w == "" || w != strings.ToLower(w) {
				t.Fatalf("word %q from %q", w, key)
			}
		}
		// Separators and case do not change the answer.
		if SecretKey(key) != SecretKey(strings.Join(words, "_")) {
			t.Fatalf("SecretKey(%q) differs from its words %q", key, words)
		}
		_ = SensitiveHeader(key)
		_ = SecretValue(key)
	})
}
