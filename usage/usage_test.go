package usage

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/tameflare/tf/audit"
)

// anthropicStream is a Messages API stream as Anthropic sends it.
const anthropicStream = "event: message_start\n" +
	`data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"usage":{"input_tokens":12,"cache_creation_input_tokens":100,"cache_read_input_tokens":2000,"output_tokens":1}}}` + "\n\n" +
	"event: ping\ndata: {\"type\": \"ping\"}\n\n" +
	"event: content_block_start\n" + `data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}` + "\n\n" +
	"event: content_block_delta\n" + `data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"the usage of words"}}` + "\n\n" +
	"event: content_block_stop\n" + `data: {"type":"content_block_stop","index":0}` + "\n\n" +
	"event: message_delta\n" + `data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":57}}` + "\n\n" +
	"event: message_stop\n" + `data: {"type":"message_stop"}` + "\n\n"

var cases = []struct {
	name   string
	format Format
	ct     string
	body   string
	want   audit.Usage
}{
	{"anthropic stream", Anthropic, "text/event-stream; charset=utf-8", anthropicStream,
		audit.Usage{Model: "claude-sonnet-4-5", Input: 12, Output: 57, CacheRead: 2000, CacheWrite: 100}},
	{"anthropic json", Anthropic, "application/json",
		`{"id":"msg_1","type":"message","model":"claude-haiku-4-5","content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":0}}`,
		audit.Usage{Model: "claude-haiku-4-5", Input: 10, Output: 5}},
	{"anthropic crlf", Anthropic, "text/event-stream", strings.ReplaceAll(anthropicStream, "\n", "\r\n"),
		audit.Usage{Model: "claude-sonnet-4-5", Input: 12, Output: 57, CacheRead: 2000, CacheWrite: 100}},
	{"openai chat stream", OpenAI, "text/event-stream",
		`data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{"content":"hi"}}],"usage":null}` + "\n\n" +
			`data: {"id":"c","object":"chat.completion.chunk","model":"gpt-4o","choices":[],"usage":{"prompt_tokens":20,"completion_tokens":7,"total_tokens":27,"prompt_tokens_details":{"cached_tokens":16}}}` + "\n\ndata: [DONE]\n\n",
		audit.Usage{Model: "gpt-4o", Input: 20, Output: 7, CacheRead: 16}},
	{"openai responses stream", OpenAI, "text/event-stream",
		"event: response.created\n" + `data: {"type":"response.created","response":{"id":"r","model":"gpt-5-codex","usage":null}}` + "\n\n" +
			"event: response.output_text.delta\n" + `data: {"type":"response.output_text.delta","delta":"hi"}` + "\n\n" +
			"event: response.completed\n" + `data: {"type":"response.completed","response":{"id":"r","model":"gpt-5-codex","usage":{"input_tokens":300,"input_tokens_details":{"cached_tokens":256},"output_tokens":40,"output_tokens_details":{"reasoning_tokens":30},"total_tokens":340}}}` + "\n\n",
		audit.Usage{Model: "gpt-5-codex", Input: 300, Output: 40, CacheRead: 256}},
	{"openai json", OpenAI, "application/json",
		`{"id":"c","object":"chat.completion","model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3}}`,
		audit.Usage{Model: "gpt-4o-mini", Input: 9, Output: 3}},
	{"gemini stream", Gemini, "text/event-stream",
		`data: {"candidates":[{"content":{"parts":[{"text":"hi"}]}}],"usageMetadata":{"promptTokenCount":8,"totalTokenCount":8},"modelVersion":"gemini-2.5-pro"}` + "\r\n\r\n" +
			`data: {"candidates":[{"content":{"parts":[{"text":"!"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":4,"thoughtsTokenCount":6,"cachedContentTokenCount":2},"modelVersion":"gemini-2.5-pro"}` + "\r\n\r\n",
		audit.Usage{Model: "gemini-2.5-pro", Input: 8, Output: 10, CacheRead: 2}},
	{"gemini json array", Gemini, "application/json",
		`[{"candidates":[],"usageMetadata":{"promptTokenCount":8}},{"candidates":[],"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":3},"modelVersion":"gemini-2.5-flash"}]`,
		audit.Usage{Model: "gemini-2.5-flash", Input: 8, Output: 3}},
	// Bad input: unknown usage, never a guess.
	{"wrong type", Anthropic, "text/event-stream",
		`data: {"type":"message_start","message":{"model":"m","usage":{"input_tokens":"12"}}}` + "\n\n",
		audit.Usage{Unknown: "malformed usage event: json: cannot unmarshal string into Go struct field usageJSON.message.usage.input_tokens of type int64"}},
	{"negative", OpenAI, "application/json", `{"usage":{"prompt_tokens":-5}}`, audit.Usage{Unknown: "a negative token count"}},
	{"truncated event", Anthropic, "text/event-stream", `data: {"type":"message_start","message":{"usage":{"input_tok`, audit.Usage{Unknown: "malformed usage event: unexpected end of JSON input"}},
	{"no usage", Anthropic, "text/event-stream", "event: ping\ndata: {}\n\n", audit.Usage{Unknown: "the response reported no usage"}},
	{"gigantic model", Anthropic, "application/json", `{"model":"` + strings.Repeat("m", 1000) + `","usage":{"input_tokens":1}}`, audit.Usage{Unknown: "a model name longer than 256 bytes"}},
	{"not json", OpenAI, "application/json", `<html>`, audit.Usage{Unknown: "malformed usage event: invalid character '<' looking for beginning of value"}},
	{"empty", OpenAI, "application/json", ``, audit.Usage{Unknown: "empty response"}},
}

// Usage is read whatever the read sizes, and the stream goes through
// byte for byte.
func TestReader(t *testing.T) {
	for _, c := range cases {
		for _, split := range []int{0, 1, 7, 64} {
			t.Run(fmt.Sprintf("%s/%d", c.name, split), func(t *testing.T) {
				var src io.Reader = strings.NewReader(c.body)
				if split > 0 {
					src = &chunked{s: c.body, n: split}
				}
				r := NewReader(io.NopCloser(src), c.format, c.ct)
				got, err := io.ReadAll(r)
				if err != nil || string(got) != c.body {
					t.Fatalf("stream changed: err %v\n got %q\nwant %q", err, got, c.body)
				}
				if u := r.Usage(); u != c.want {
					t.Errorf("usage = %+v\nwant    %+v", u, c.want)
				}
			})
		}
	}
}

type chunked struct {
	s string
	n int
}

func (c *chunked) Read(p []byte) (int, error) {
	if c.s == "" {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.n)], c.s)
	c.s = c.s[n:]
	return n, nil
}

// A read error is passed on; usage read so far stands.
func TestReaderError(t *testing.T) {
	r := NewReader(io.NopCloser(io.MultiReader(strings.NewReader(anthropicStream[:400]), iotest.ErrReader(io.ErrUnexpectedEOF))), Anthropic, "text/event-stream")
	if _, err := io.ReadAll(r); err != io.ErrUnexpectedEOF {
		t.Fatalf("err = %v", err)
	}
	r.Close()
	if u := r.Usage(); u.Input != 12 || u.Model != "claude-sonnet-4-5" {
		t.Errorf("usage = %+v", u)
	}
}

// FuzzReader: any stream goes through unchanged, never a panic, and
// usage is either known with counts not below zero or unknown with zero
// counts.
func FuzzReader(f *testing.F) {
	for _, c := range cases {
		f.Add(c.body, uint8(c.format), 5, strings.HasPrefix(c.ct, "text/"))
	}
	f.Fuzz(func(t *testing.T, body string, format uint8, split int, sse bool) {
		ct := "application/json"
		if sse {
			ct = "text/event-stream"
		}
		r := NewReader(io.NopCloser(&chunked{s: body, n: max(1, split%97)}), Format(format%4), ct)
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, []byte(body)) {
			t.Fatalf("stream changed")
		}
		u := r.Usage()
		if u.Input < 0 || u.Output < 0 || u.CacheRead < 0 || u.CacheWrite < 0 || len(u.Model) > maxModel {
			t.Fatalf("usage %+v", u)
		}
		if u.Unknown != "" && (u.Input != 0 || u.Output != 0 || u.Model != "") {
			t.Fatalf("unknown usage with counts: %+v", u)
		}
	})
}

// BenchmarkSSE measures usage extraction per SSE event of a realistic
// Anthropic stream (mostly text deltas), read in the proxy's 32 KiB
// buffer: the report's ns/event is the cost tf adds per event.
func BenchmarkSSE(b *testing.B) {
	var sb strings.Builder
	head, tail, _ := strings.Cut(anthropicStream, "event: content_block_delta")
	sb.WriteString(head)
	delta := "event: content_block_delta" + strings.SplitAfter(tail, "\n\n")[0]
	const deltas = 200
	for range deltas {
		sb.WriteString(delta)
	}
	sb.WriteString("event: content_block_stop" + strings.SplitN(tail, "event: content_block_stop", 2)[1])
	stream := sb.String()
	events := strings.Count(stream, "\n\n")
	buf := make([]byte, 32<<10)
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	src := strings.NewReader(stream)
	for b.Loop() {
		src.Reset(stream)
		r := NewReader(io.NopCloser(src), Anthropic, "text/event-stream")
		for {
			if _, err := r.Read(buf); err != nil {
				break
			}
		}
		if u := r.Usage(); u.Output != 57 {
			b.Fatalf("usage %+v", u)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*events), "ns/event")
}

// BenchmarkSSEPlain is the same stream read without usage extraction.
func BenchmarkSSEPlain(b *testing.B) {
	stream := strings.Repeat("event: content_block_delta\n"+`data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hello world"}}`+"\n\n", 200)
	buf := make([]byte, 32<<10)
	src := strings.NewReader(stream)
	b.SetBytes(int64(len(stream)))
	for b.Loop() {
		src.Reset(stream)
		for {
			if _, err := src.Read(buf); err != nil {
				break
			}
		}
	}
}

// BenchmarkSSEChat: an OpenAI chat stream (no event names, "usage":null
// in every chunk, as with stream_options.include_usage).
func BenchmarkSSEChat(b *testing.B) {
	chunk := `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"hello"}}],"usage":null}` + "\n\n"
	stream := strings.Repeat(chunk, 200) + `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","model":"gpt-4o","choices":[],"usage":{"prompt_tokens":20,"completion_tokens":200}}` + "\n\ndata: [DONE]\n\n"
	events := strings.Count(stream, "\n\n")
	buf := make([]byte, 32<<10)
	src := strings.NewReader(stream)
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		src.Reset(stream)
		r := NewReader(io.NopCloser(src), OpenAI, "text/event-stream")
		for {
			if _, err := r.Read(buf); err != nil {
				break
			}
		}
		if u := r.Usage(); u.Output != 200 {
			b.Fatalf("usage %+v", u)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*events), "ns/event")
}

// A token limit counts every token processed, cached ones once.
func TestTokens(t *testing.T) {
	u := &audit.Usage{Input: 100, Output: 20, CacheRead: 60, CacheWrite: 5}
	if got := Tokens("anthropic", u); got != 185 {
		t.Errorf("anthropic: %d, want 185 (its input excludes cache reads)", got)
	}
	if got := Tokens("openai", u); got != 125 {
		t.Errorf("openai: %d, want 125 (its input includes cached tokens)", got)
	}
}
