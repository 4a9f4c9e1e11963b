package mcp

import (
	"io"
	"net/http"
	"strconv"
	"testing"
)

// answerEvents is an event stream of tool results with ids 0, 1, ...,
// made as it is read; before each event, await (when set) enters its id
// in the table, as the POST that asks would.
type answerEvents struct {
	i     int
	await func(id string)
	buf   []byte
}

func (r *answerEvents) Read(p []byte) (int, error) {
	if len(r.buf) == 0 {
		id := strconv.Itoa(r.i)
		r.i++
		if r.await != nil {
			r.await(id)
		}
		r.buf = append(r.buf[:0], `event: message
data: {"jsonrpc":"2.0","id":`+id+`,"result":{"content":[{"type":"text","text":"Echo: a short answer of the kind most tools give"}],"isError":false}}

`...)
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (r *answerEvents) Close() error { return nil }

// benchLegacyStream reads b.N answer events through the reader of a
// legacy GET stream; with awaited, each answers a request in the table.
func benchLegacyStream(b *testing.B, awaited bool) {
	src := &answerEvents{}
	a := Answers{Shape: true, Hide: func(ListKind, string) bool { return false }, ServerRequest: func(*Message) bool { return true }}
	if awaited {
		var s LegacySessions
		u := mustURL(b, "http://srv.test/message?sessionId=a")
		ls, _ := s.Open(u, make(chan []byte))
		calls := []Call{{Method: "tools/call", Name: "echo"}}
		src.await = func(id string) {
			w, err := ls.Await([]string{id}, calls, nil)
			if err != nil {
				b.Fatal(err)
			}
			w.Start()
		}
		a.Awaited = ls.Answer
		defer s.CloseAll()
	}
	res := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/event-stream"}}, Body: src}
	if err := a.Hook()(res); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 32<<10)
	b.ReportAllocs()
	b.ResetTimer()
	for src.i < b.N {
		if _, err := res.Body.Read(buf); err != nil && err != io.EOF {
			b.Fatal(err)
		}
	}
}

// The cost of a tool result on the legacy stream, without and with the
// table of awaited answers (Await, Start, Answer: what tf adds per
// request for the outcome's isError).
func BenchmarkLegacyStreamEvent(b *testing.B)        { benchLegacyStream(b, false) }
func BenchmarkLegacyStreamEventAwaited(b *testing.B) { benchLegacyStream(b, true) }

// What the table adds per request alone: Await and Start for the POST,
// Answer for its answer on the stream (with the outcome's callback).
func BenchmarkLegacyAwaitAnswer(b *testing.B) {
	var s LegacySessions
	ls, _ := s.Open(mustURL(b, "http://srv.test/message?sessionId=a"), make(chan []byte))
	defer s.CloseAll()
	calls := []Call{{Method: "tools/call", Name: "echo"}}
	ids := make([][]string, 1024)
	for i := range ids {
		ids[i] = []string{strconv.Itoa(i)}
	}
	done := func(Answered) {}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		id := ids[i%len(ids)]
		i++
		w, err := ls.Await(id, calls, done)
		if err != nil {
			b.Fatal(err)
		}
		w.Start()
		if _, ok := ls.Answer([]byte(id[0]), true, false, nil); !ok {
			b.Fatal("not awaited")
		}
	}
}
