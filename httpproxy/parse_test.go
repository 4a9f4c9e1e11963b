package httpproxy

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseAuthority(t *testing.T) {
	for _, c := range []struct {
		in          string
		defaultPort int
		want        string // String(), "" for an error
	}{
		{"api.example.test:443", 0, "api.example.test:443"},
		{"API.Example.TEST.:8443", 0, "api.example.test:8443"},
		{"api.example.test", 443, "api.example.test:443"},
		{"api.example.test", 0, ""},
		{"[::1]:443", 0, "[::1]:443"},
		{"[::ffff:10.0.0.1]:80", 0, "10.0.0.1:80"},
		{"[::1]", 80, "[::1]:80"},
		{"127.0.0.1:1", 0, "127.0.0.1:1"},
		{"::1", 443, ""},
		{"[1.2.3.4]:80", 0, ""},
		{"[::1]x", 80, ""},
		{"[fe80::1%25eth0]:80", 0, ""},
		{"host:0", 0, ""},
		{"host:65536", 0, ""},
		{"host:+80", 0, ""},
		{"host:", 0, ""},
		{":80", 0, ""},
		{"a b:80", 0, ""},
		{"user@host:80", 0, ""},
		{"127.1:80", 0, ""},
		{"0x7f.1:80", 0, ""},
		{"under_score.example.test:443", 0, "under_score.example.test:443"},
		{"", 80, ""},
	} {
		a, err := parseAuthority(c.in, c.defaultPort)
		got := ""
		if err == nil {
			got = a.String()
		}
		if got != c.want {
			t.Errorf("parseAuthority(%q, %d) = %q (%v), want %q", c.in, c.defaultPort, got, err, c.want)
		}
	}
}

func FuzzParseAuthority(f *testing.F) {
	for _, s := range []string{"api.example.test:443", "[::1]:80", "127.0.0.1", "a..b", "[::ffff:1.2.3.4]", "x:99999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := parseAuthority(s, 443)
		if err != nil {
			return
		}
		// The canonical form parses to itself.
		b, err := parseAuthority(a.String(), 0)
		if err != nil || b != a {
			t.Fatalf("%q -> %q -> %v, %v", s, a.String(), b, err)
		}
		if h := a.hostPort(443); h != a.String() {
			if c, err := parseAuthority(h, 443); err != nil || c != a {
				t.Fatalf("%q: host form %q does not round-trip", s, h)
			}
		}
		if strings.ContainsAny(a.host, " /@%\r\n") {
			t.Fatalf("%q: host %q has a forbidden character", s, a.host)
		}
	})
}

// trackAll feeds the stream in pieces of size step (whole when step <= 0)
// and returns the framing records.
func trackAll(stream string, step int) ([]string, framingState) {
	t := framingTracker{maxHead: 64 << 10}
	b := []byte(stream)
	if step <= 0 {
		step = len(b) + 1
	}
	for len(b) > 0 {
		n := min(step, len(b))
		t.feed(b[:n])
		b = b[n:]
	}
	var out []string
	for {
		r, ok := t.pop()
		if !ok {
			return out, t.state
		}
		out = append(out, r)
	}
}

func TestFramingTracker(t *testing.T) {
	for _, c := range []struct {
		name   string
		stream string
		want   []string
		state  framingState
	}{
		{"get", "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n", []string{"", ""}, stHead},
		{"content-length body hides a head", "POST / HTTP/1.1\r\nContent-Length: 18\r\n\r\nGET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n", []string{"", ""}, stHead},
		{"chunked with extension and trailer", "POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n4;x=y\r\nab\r\n\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\n\r\n", []string{"", ""}, stHead},
		{"bare LF", "GET / HTTP/1.1\nHost: a\n\nGET / HTTP/1.1\n\n", []string{"", ""}, stHead},
		{"both", "POST / HTTP/1.1\r\nContent-Length: 3\r\ntransfer-encoding: chunked\r\n\r\n", []string{"request has both Content-Length and Transfer-Encoding"}, stRaw},
		{"duplicate CL", "POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\nabc", []string{"request has more than one Content-Length"}, stRaw},
		{"CL list", "POST / HTTP/1.1\r\nContent-Length: 3,3\r\n\r\nabc", []string{"request has more than one Content-Length"}, stRaw},
		{"two TE", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", []string{"request has more than one Transfer-Encoding header"}, stRaw},
		{"folded CL", "POST / HTTP/1.1\r\nContent-Length:\r\n 3\r\n\r\nabc", []string{"request folds a Content-Length or Transfer-Encoding header"}, stRaw},
		{"http/1.0 TE", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", []string{"HTTP/1.0 request with Transfer-Encoding"}, stRaw},
		{"connect", "CONNECT a:443 HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n", []string{""}, stRaw},
		{"upgrade", "GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\nGET / HTTP/1.1\r\n\r\n", []string{""}, stRaw},
		{"bad chunk size", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET / HTTP/1.1\r\n\r\n", []string{""}, stRaw},
		{"head too large", "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", 70<<10) + "\r\n\r\n", nil, stRaw},
	} {
		for _, step := range []int{0, 1, 3, 7} {
			got, state := trackAll(c.stream, step)
			if !reflect.DeepEqual(got, c.want) || state != c.state {
				t.Errorf("%s (step %d): %q state %d, want %q state %d", c.name, step, got, state, c.want, c.state)
			}
		}
	}
}

func FuzzFramingTracker(f *testing.F) {
	f.Add("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n", 5)
	f.Add("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 1)
	f.Add("GET / HTTP/1.1\nUpgrade: x\n\n", 2)
	f.Fuzz(func(t *testing.T, stream string, step int) {
		if step < 1 || step > len(stream) {
			step = 1
		}
		// The records do not depend on how the bytes arrive.
		whole, ws := trackAll(stream, 0)
		split, ss := trackAll(stream, step)
		if !reflect.DeepEqual(whole, split) || ws != ss {
			t.Fatalf("whole %q/%d, split by %d %q/%d", whole, ws, step, split, ss)
		}
		if len(whole) > strings.Count(stream, "\n") {
			t.Fatalf("%d heads from %d lines", len(whole), strings.Count(stream, "\n"))
		}
	})
}
