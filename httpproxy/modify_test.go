package httpproxy

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tameflare/tf/connectors"
)

// upper is a body that upper-cases what it reads, chunk by chunk.
type upper struct{ io.ReadCloser }

func (u upper) Read(p []byte) (int, error) {
	n, err := u.ReadCloser.Read(p)
	copy(p, strings.ToUpper(string(p[:n])))
	return n, err
}

// ModifyResponse edits the upstream response, and a body it replaces still
// streams: each event reaches the client while the upstream holds the next.
func TestModifyResponseStreams(t *testing.T) {
	release := make(chan struct{})
	up := newTLSUpstream(t, []string{"events.test"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "data: second\n\n")
	}))
	gov := newStubGovernor()
	gov.decide = func(*connectors.Request) Verdict {
		return Verdict{Allow: true, ModifyResponse: func(res *http.Response) error {
			res.Header.Set("X-Modified", "yes")
			res.Body = upper{res.Body}
			return nil
		}}
	}
	tp := startProxy(t, Config{Governor: gov, Upstreams: map[string]string{"events.test": up.addr()}, RootCAs: up.roots})
	res, err := tp.client(t).Get("https://events.test/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.Header.Get("X-Modified") != "yes" {
		t.Errorf("headers: %v", res.Header)
	}
	br := bufio.NewReader(res.Body)
	got := make(chan string, 1)
	go func() {
		line, _ := br.ReadString('\n')
		got <- line
	}()
	select {
	case line := <-got:
		if line != "DATA: FIRST\n" {
			t.Fatalf("first line %q", line)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the first event was held back")
	}
	close(release)
	rest, _ := io.ReadAll(br)
	if string(rest) != "\nDATA: SECOND\n\n" {
		t.Fatalf("rest %q", rest)
	}
}

// A hook that fails answers 502 and reports the error; the upstream body
// is not passed on.
func TestModifyResponseError(t *testing.T) {
	up := newTLSUpstream(t, []string{"api.test"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "secret upstream body")
	}))
	gov := newStubGovernor()
	gov.decide = func(*connectors.Request) Verdict {
		return Verdict{Allow: true, ModifyResponse: func(*http.Response) error { return errors.New("cannot filter") }}
	}
	tp := startProxy(t, Config{Governor: gov, Upstreams: map[string]string{"api.test": up.addr()}, RootCAs: up.roots})
	res, err := tp.client(t).Get("https://api.test/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusBadGateway || strings.Contains(string(body), "secret") {
		t.Fatalf("%d %q", res.StatusCode, body)
	}
	if o := gov.outcome(t); o.Err == nil || !strings.Contains(o.Err.Error(), "cannot filter") {
		t.Fatalf("outcome %+v", o)
	}
}
