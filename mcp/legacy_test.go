package mcp

import (
	"errors"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// answers collects what the waits of a test were done with.
type answers chan Answered

func (a answers) done(x Answered) { a <- x }

func (a answers) next(t *testing.T) Answered {
	t.Helper()
	select {
	case x := <-a:
		return x
	case <-time.After(5 * time.Second):
		t.Fatal("no answer")
		return Answered{}
	}
}

func (a answers) none(t *testing.T) {
	t.Helper()
	select {
	case x := <-a:
		t.Fatalf("done early: %+v", x)
	default:
	}
}

func TestLegacySessionsLookup(t *testing.T) {
	var s LegacySessions
	inject := make(chan []byte)
	ls, ok := s.Open(mustURL(t, "http://Srv.test:80/message?sessionId=abc"), inject)
	if !ok {
		t.Fatal("not opened")
	}
	other, _ := s.Open(mustURL(t, "http://srv.test/message?sessionId=def"), make(chan []byte))
	inPath, _ := s.Open(mustURL(t, "http://srv.test/sessions/xyz"), make(chan []byte))
	for _, tc := range []struct {
		url  string
		want *LegacySession
		err  error
	}{
		{"http://srv.test/message?sessionId=abc", ls, nil},
		// As servers route: the path without case, dot segments and
		// repeated slashes, the host without case or default port, the
		// query in any order, escaped or not, with other parameters.
		{"http://SRV.test:80//Message/?x=1&sessionId=%61bc", ls, nil},
		{"http://srv.test/a/../message?sessionId=abc&sessionId2=x", ls, nil},
		{"http://srv.test/message?sessionId=def", other, nil},
		{"http://srv.test/message?sessionId=zzz", nil, nil},
		{"http://srv.test/message", nil, nil},
		{"https://srv.test/message?sessionId=abc", nil, nil},
		// The session's parameter names it on any path: a spelling of
		// the path that tf would not see as the endpoint's cannot escape.
		{"http://srv.test/messages?sessionId=abc", ls, nil},
		{"http://srv.test/message%3bx?sessionId=abc", ls, nil},
		{"http://other.test/message?sessionId=abc", nil, nil},
		// A session named in the path is found by the path.
		{"http://srv.test/sessions/XYZ/?v=1", inPath, nil},
		{"http://srv.test/sessions/xyz2", nil, nil},
		// Which session a server takes is its own affair: refused.
		{"http://srv.test/message?sessionId=abc&sessionId=def", nil, ErrAmbiguousPost},
		{"http://srv.test/message?sessionId=abc&sessionId=abc", nil, ErrAmbiguousPost},
		{"http://srv.test/message?sessionId=abc;x=1", nil, ErrAmbiguousPost},
	} {
		got, err := s.Lookup(mustURL(t, tc.url))
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("%s: %p, %v; want %p, %v", tc.url, got, err, tc.want, tc.err)
		}
	}
	if i, _ := ls.Inject(); i != inject {
		t.Error("inject")
	}
}

func TestLegacyAwaitAnswer(t *testing.T) {
	var s LegacySessions
	ls, _ := s.Open(mustURL(t, "http://srv.test/message?sessionId=a"), make(chan []byte))
	got := make(answers, 4)
	w, err := ls.Await([]string{"1", `"x"`, "3"}, []Call{{Method: "tools/call", Name: "echo"}, {Method: "tools/call", Name: "fail"}, {Method: "resources/read", Name: "u"}}, got.done)
	if err != nil {
		t.Fatal(err)
	}
	w.Start()
	// 1 and "1" differ; "x" and "\u0078" do not.
	if _, ok := ls.Answer([]byte(`"1"`), true, false, nil); ok {
		t.Fatal(`"1" answered 1`)
	}
	if c, ok := ls.Answer([]byte(`1`), true, false, nil); !ok || c.Name != "echo" {
		t.Fatalf("1: %+v %v", c, ok)
	}
	got.none(t)
	if c, ok := ls.Answer([]byte(`"\u0078"`), true, true, nil); !ok || c.Name != "fail" {
		t.Fatalf("x: %+v %v", c, ok)
	}
	// A second answer to an id answered is not taken.
	if _, ok := ls.Answer([]byte(`1`), true, false, nil); ok {
		t.Fatal("answered twice")
	}
	ls.Answer([]byte(`3`), false, false, []byte(`{"code":-32002,"message":"no such resource"}`))
	a := got.next(t)
	if a.IsError == nil || !*a.IsError || a.NoAnswer != "" || !strings.Contains(a.Error, "-32002") {
		t.Fatalf("answered %+v", a)
	}
	if s.Awaiting() != 0 {
		t.Fatalf("%d left in the table", s.Awaiting())
	}
}

// The agent chooses the ids: one in flight cannot be reused, in another
// POST or the same batch, so that no answer is taken for another
// request's.
func TestLegacyDuplicateIDs(t *testing.T) {
	var s LegacySessions
	ls, _ := s.Open(mustURL(t, "http://srv.test/message?sessionId=a"), make(chan []byte))
	call := []Call{{Method: "tools/call", Name: "echo"}}
	got := make(answers, 4)
	if _, err := ls.Await([]string{"1"}, call, got.done); err != nil {
		t.Fatal(err)
	}
	for _, ids := range [][]string{{"1"}, {"1.0"}, {"1e0"}, {"7", "7"}, {`"b"`, `"\u0062"`}} {
		if _, err := ls.Await(ids, append(call, call...)[:len(ids)], got.done); !errors.Is(err, ErrDuplicateID) {
			t.Errorf("%v: %v", ids, err)
		}
	}
	// Nothing of a refused POST stays.
	if s.Awaiting() != 1 {
		t.Fatalf("%d awaiting", s.Awaiting())
	}
	// Another session has its own ids.
	ls2, _ := s.Open(mustURL(t, "http://srv.test/message?sessionId=b"), make(chan []byte))
	if _, err := ls2.Await([]string{"1"}, call, got.done); err != nil {
		t.Fatal(err)
	}
	if _, ok := ls2.Answer([]byte("1"), true, true, nil); !ok {
		t.Fatal("not answered")
	}
	if a := got.next(t); a.IsError == nil || !*a.IsError {
		t.Fatalf("%+v", a)
	}
	got.none(t) // the first session's request still waits
}

// A request that times out is recorded without an answer, and its id
// stays taken until the answer comes: the late answer is not another's.
func TestLegacyTimeoutKeepsID(t *testing.T) {
	s := LegacySessions{Timeout: 20 * time.Millisecond}
	ls, _ := s.Open(mustURL(t, "http://srv.test/message?sessionId=a"), make(chan []byte))
	call := []Call{{Method: "tools/call", Name: "slow"}}
	got := make(answers, 4)
	w, err := ls.Await([]string{"1"}, call, got.done)
	if err != nil {
		t.Fatal(err)
	}
	got.none(t)
	w.Start()
	if a := got.next(t); a.NoAnswer != NoAnswerTimeout+"20ms" || a.IsError != nil {
		t.Fatalf("%+v", a)
	}
	if _, err := ls.Await([]string{"1"}, call, got.done); !errors.Is(err, ErrDuplicateID) {
		t.Fatalf("reused while its answer may come: %v", err)
	}
	if _, ok := ls.Answer([]byte("1"), true, true, nil); !ok {
		t.Fatal("the late answer was not taken off")
	}
	got.none(t) // recorded once
	if s.Awaiting() != 0 {
		t.Fatalf("%d awaiting", s.Awaiting())
	}
	if _, err := ls.Await([]string{"1"}, call, got.done); err != nil {
		t.Fatal(err)
	}
}

// The session lives while one of its streams is open; when the last
// ends, every request still waiting is done without an answer, and its
// table is gone.
func TestLegacyStreamsEnd(t *testing.T) {
	var s LegacySessions
	u := mustURL(t, "http://srv.test/message?sessionId=a")
	in1, in2 := make(chan []byte), make(chan []byte)
	ls, _ := s.Open(u, in1)
	if again, _ := s.Open(u, in2); again != ls {
		t.Fatal("a second stream of the session made another")
	}
	if i, _ := ls.Inject(); i != in2 {
		t.Fatal("refusals go to the latest stream")
	}
	got := make(answers, 4)
	w, _ := ls.Await([]string{"1", "2"}, []Call{{Method: "tools/call", Name: "a"}, {Method: "ping"}}, got.done)
	w.Start()
	ls.Answer([]byte("1"), true, false, nil)
	ls.CloseStream(in2)
	got.none(t)
	if i, _ := ls.Inject(); i != in1 {
		t.Fatal("inject after the latest stream ended")
	}
	timedOut, _ := ls.Await([]string{"3"}, []Call{{Method: "ping"}}, got.done)
	timedOut.finish(NoAnswerTimeout, false) // stays in the table
	got.next(t)
	ls.CloseStream(in1)
	a := got.next(t)
	if a.NoAnswer != NoAnswerStreamEnded || a.IsError == nil || *a.IsError {
		t.Fatalf("%+v", a)
	}
	if found, _ := s.Lookup(u); found != nil || s.Awaiting() != 0 {
		t.Fatalf("left: %v, %d", found, s.Awaiting())
	}
	if _, err := ls.Await([]string{"4"}, []Call{{Method: "ping"}}, got.done); err == nil {
		t.Fatal("awaited on an ended session")
	}
}

// Cancel (the POST was refused) and Finish (answered in the POST's
// response) take the requests off the table.
func TestLegacyCancelFinish(t *testing.T) {
	var s LegacySessions
	ls, _ := s.Open(mustURL(t, "http://srv.test/message?sessionId=a"), make(chan []byte))
	got := make(answers, 4)
	w, _ := ls.Await([]string{"1"}, []Call{{Method: "ping"}}, got.done)
	w.Cancel()
	got.none(t)
	w, err := ls.Await([]string{"1"}, []Call{{Method: "ping"}}, got.done)
	if err != nil {
		t.Fatal(err)
	}
	w.Finish("")
	if a := got.next(t); a.NoAnswer != "" {
		t.Fatalf("%+v", a)
	}
	if s.Awaiting() != 0 {
		t.Fatal("left in the table")
	}
}

// The tables are bounded per session and in all; a POST beyond is
// refused, nothing of it kept.
func TestLegacyBounds(t *testing.T) {
	var s LegacySessions
	open := func(i int) *LegacySession {
		ls, ok := s.Open(mustURL(t, "http://srv.test/message?sessionId="+strconv.Itoa(i)), make(chan []byte))
		if !ok {
			t.Fatal("not opened")
		}
		return ls
	}
	batch := func(from, n int) ([]string, []Call) {
		ids := make([]string, n)
		calls := make([]Call, n)
		for i := range ids {
			ids[i] = strconv.Itoa(from + i)
			calls[i] = Call{Method: "ping"}
		}
		return ids, calls
	}
	ls := open(0)
	ids, calls := batch(0, MaxAwaitedPerSession)
	if _, err := ls.Await(ids, calls, nil); err != nil {
		t.Fatal(err)
	}
	ids, calls = batch(MaxAwaitedPerSession, 1)
	if _, err := ls.Await(ids, calls, nil); !errors.Is(err, ErrTooManyAwait) {
		t.Fatalf("beyond the session's bound: %v", err)
	}
	for i := 1; i < MaxAwaited/MaxAwaitedPerSession; i++ {
		ids, calls := batch(0, MaxAwaitedPerSession)
		if _, err := open(i).Await(ids, calls, nil); err != nil {
			t.Fatal(err)
		}
	}
	last := open(MaxAwaited)
	if _, err := last.Await([]string{"1"}, []Call{{Method: "ping"}}, nil); !errors.Is(err, ErrTooManyAwait) {
		t.Fatalf("beyond the overall bound: %v", err)
	}
	if s.Awaiting() != MaxAwaited {
		t.Fatalf("%d awaiting", s.Awaiting())
	}
	s.CloseAll()
	if s.Awaiting() != 0 {
		t.Fatalf("%d awaiting after CloseAll", s.Awaiting())
	}
	// Sessions are bounded too.
	for i := range MaxLegacySessions {
		open(i)
	}
	if _, ok := s.Open(mustURL(t, "http://srv.test/message?sessionId=x"), make(chan []byte)); ok {
		t.Fatal("beyond the sessions' bound")
	}
}

// Open and Lookup agree on every endpoint: a post to the URL a stream
// announced finds its session.
func FuzzLegacyLookup(f *testing.F) {
	for _, s := range []string{"http://h/message?sessionId=1", "https://H:443/a/../m?x=1&y=%20", "http://h/?a=1;b=2", "http://h/p?=&="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			return
		}
		var s LegacySessions
		ls, ok := s.Open(u, make(chan []byte))
		if !ok {
			return
		}
		got, err := s.Lookup(u)
		if err != nil || got != ls {
			t.Fatalf("%q: %v, %v", raw, got, err)
		}
	})
}
