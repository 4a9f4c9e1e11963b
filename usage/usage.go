// Package usage reads the token usage of a model API response as it
// streams past, without holding back or copying the stream.
package usage

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/tameflare/tf/audit"
)

// Format is the response format of a model API.
type Format int

const (
	// Anthropic: the Messages API; a stream reports usage in
	// message_start and message_delta.
	Anthropic Format = iota + 1
	// OpenAI: chat completions (usage in the last chunk) and the
	// Responses API (usage in response.completed).
	OpenAI
	// Gemini: usageMetadata in every chunk, the last one final.
	Gemini
)

// FormatOf returns the format of a model API connector's responses, or 0.
func FormatOf(connector string) Format {
	switch connector {
	case "anthropic":
		return Anthropic
	case "openai":
		return OpenAI
	case "google":
		return Gemini
	}
	return 0
}

const (
	// maxLine bounds an SSE line kept across reads; a longer line is not
	// read for usage (text deltas, not usage, make long lines).
	maxLine = 256 << 10
	// maxJSON bounds a JSON response read for usage.
	maxJSON = 4 << 20
	// maxModel bounds a recorded model name.
	maxModel = 256
)

// A Reader passes a response body through unchanged and reads its usage on
// the way. Bytes are scanned in the caller's buffer; only an SSE line split
// across two reads, or a JSON body (bounded), is kept aside.
type Reader struct {
	body   io.ReadCloser
	format Format
	sse    bool

	carry []byte // an SSE line begun in an earlier read
	skip  bool   // the rest of the current line is not of interest
	// other is set by an event: line naming an event that carries no
	// usage (a text delta), until the blank line that ends the event.
	other bool
	doc   []byte // a JSON body, kept for its usage

	mu   sync.Mutex
	u    audit.Usage
	seen bool
	bad  string
	done bool
}

// NewReader wraps body, a response of format f with content type ct.
func NewReader(body io.ReadCloser, f Format, ct string) *Reader {
	return &Reader{body: body, format: f, sse: strings.HasPrefix(strings.ToLower(strings.TrimSpace(ct)), "text/event-stream")}
}

// Read reads from the body and scans what it read.
func (r *Reader) Read(p []byte) (int, error) {
	n, err := r.body.Read(p)
	if n > 0 {
		r.scan(p[:n])
	}
	if err == io.EOF {
		r.finish()
	}
	return n, err
}

// Close closes the body; usage read so far stands.
func (r *Reader) Close() error {
	r.finish()
	return r.body.Close()
}

// Usage returns the usage the response reported; Unknown says why there is
// none (a malformed event, a wrong type, no usage at all).
func (r *Reader) Usage() audit.Usage {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.finishLocked()
	return r.u
}

func (r *Reader) finish() {
	r.mu.Lock()
	r.finishLocked()
	r.mu.Unlock()
}

func (r *Reader) finishLocked() {
	if r.done {
		return
	}
	r.done = true
	if !r.sse && r.bad == "" {
		if r.doc == nil {
			r.bad = "empty response"
		} else {
			r.json(r.doc, true)
		}
		r.doc = nil
	}
	if r.sse && len(r.carry) > 0 && !r.skip {
		r.line(r.carry) // a last line without its newline
	}
	r.carry = nil
	switch {
	case r.bad != "":
		r.u = audit.Usage{Unknown: r.bad}
	case !r.seen:
		r.u = audit.Usage{Unknown: "the response reported no usage"}
	}
}

func (r *Reader) fail(why string) {
	if r.bad == "" {
		r.bad = why
	}
}

// scan reads the bytes of one Read.
func (r *Reader) scan(b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done || r.bad != "" {
		return
	}
	if !r.sse {
		if len(r.doc)+len(b) > maxJSON {
			r.fail(fmt.Sprintf("the response is larger than %d bytes", maxJSON))
			r.doc = nil
			return
		}
		r.doc = append(r.doc, b...)
		return
	}
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			// A line continues in the next read.
			if !r.skip {
				if len(r.carry)+len(b) > maxLine {
					r.skip, r.carry = true, r.carry[:0]
				} else if len(r.carry) == 0 && !maybeData(b) && !maybeEvent(b) {
					r.skip = true
				} else {
					r.carry = append(r.carry, b...)
				}
			}
			return
		}
		line := b[:i]
		b = b[i+1:]
		if r.skip {
			r.skip = false
			continue
		}
		if len(r.carry) > 0 {
			if len(r.carry)+len(line) <= maxLine {
				r.carry = append(r.carry, line...)
				r.line(r.carry)
			}
			r.carry = r.carry[:0]
			continue
		}
		r.line(line)
	}
}

// maybeData reports whether a line's start can begin a data line.
func maybeData(b []byte) bool {
	const d = "data:"
	n := min(len(b), len(d))
	return string(b[:n]) == d[:n]
}

// maybeEvent reports whether a line's start can begin an event: line.
func maybeEvent(b []byte) bool {
	const e = "event:"
	n := min(len(b), len(e))
	return string(b[:n]) == e[:n]
}

// hasUsage reports whether an event's data can carry usage: it names the
// member as a key (text that mentions one is escaped, \"usage\", and does
// not match). OpenAI's chunks say "usage":null until the last.
func (r *Reader) hasUsage(data []byte) bool {
	switch r.format {
	case Anthropic:
		return bytes.Contains(data, []byte(`"usage"`))
	case OpenAI:
		return bytes.Contains(data, []byte(`"usage":{`)) || bytes.Contains(data, []byte(`"usage": {`))
	case Gemini:
		return bytes.Contains(data, []byte(`"usageMetadata"`))
	}
	return false
}

// usageEvents are the named events that carry usage (Anthropic's, the
// Responses API's); streams without event names are read by content.
var usageEvents = []string{"message_start", "message_delta", "response.completed", "response.incomplete", "response.failed", "response.done"}

// line reads one SSE line.
func (r *Reader) line(l []byte) {
	l = bytes.TrimSuffix(l, []byte{'\r'})
	if len(l) == 0 {
		r.other = false // the end of an event
		return
	}
	if name, ok := bytes.CutPrefix(l, []byte("event:")); ok {
		name = bytes.TrimSpace(name)
		r.other = true
		for _, e := range usageEvents {
			if string(name) == e {
				r.other = false
			}
		}
		return
	}
	data, ok := bytes.CutPrefix(l, []byte("data:"))
	if !ok || r.other || !r.hasUsage(data) {
		return
	}
	r.json(bytes.TrimSpace(data), false)
}

// usageJSON is what the three APIs report, in any of their shapes.
type usageJSON struct {
	// Anthropic
	InputTokens         *int64 `json:"input_tokens"`
	OutputTokens        *int64 `json:"output_tokens"`
	CacheCreationTokens *int64 `json:"cache_creation_input_tokens"`
	CacheReadTokens     *int64 `json:"cache_read_input_tokens"`
	// OpenAI chat completions (Responses uses input/output_tokens)
	PromptTokens       *int64         `json:"prompt_tokens"`
	CompletionTokens   *int64         `json:"completion_tokens"`
	PromptDetails      *openAIDetails `json:"prompt_tokens_details"`
	InputTokensDetails *openAIDetails `json:"input_tokens_details"`
}

type openAIDetails struct {
	CachedTokens *int64 `json:"cached_tokens"`
}

type geminiUsage struct {
	PromptTokenCount        *int64 `json:"promptTokenCount"`
	CandidatesTokenCount    *int64 `json:"candidatesTokenCount"`
	CachedContentTokenCount *int64 `json:"cachedContentTokenCount"`
	ThoughtsTokenCount      *int64 `json:"thoughtsTokenCount"`
}

type event struct {
	Type    string     `json:"type"`
	Model   *string    `json:"model"`
	Usage   *usageJSON `json:"usage"`
	Message *struct {
		Model *string    `json:"model"`
		Usage *usageJSON `json:"usage"`
	} `json:"message"`
	Response *struct {
		Model *string    `json:"model"`
		Usage *usageJSON `json:"usage"`
	} `json:"response"`
	// Gemini
	UsageMetadata *geminiUsage `json:"usageMetadata"`
	ModelVersion  *string      `json:"modelVersion"`
}

var errNegative = errors.New("a negative token count")

// json reads one JSON event or body. whole is a complete response body,
// which for Gemini may be an array of chunks.
func (r *Reader) json(data []byte, whole bool) {
	if whole && r.format == Gemini && len(bytes.TrimSpace(data)) > 0 && bytes.TrimSpace(data)[0] == '[' {
		var evs []event
		if err := json.Unmarshal(data, &evs); err != nil {
			r.fail("malformed response: " + err.Error())
			return
		}
		for i := range evs {
			r.event(&evs[i])
		}
		return
	}
	var ev event
	if err := json.Unmarshal(data, &ev); err != nil {
		r.fail("malformed usage event: " + shortErr(err))
		return
	}
	r.event(&ev)
}

func shortErr(err error) string {
	s := err.Error()
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// event folds one event's usage into r.u.
func (r *Reader) event(ev *event) {
	model, u := ev.Model, ev.Usage
	if ev.Message != nil {
		model, u = ev.Message.Model, ev.Message.Usage
	}
	if ev.Response != nil {
		model, u = ev.Response.Model, ev.Response.Usage
	}
	if r.format == Gemini {
		model = ev.ModelVersion
	}
	if model != nil {
		if len(*model) > maxModel {
			r.fail(fmt.Sprintf("a model name longer than %d bytes", maxModel))
			return
		}
		r.u.Model = *model
	}
	var err error
	switch r.format {
	case Anthropic:
		if u != nil {
			r.seen = true
			// message_delta's counts are cumulative: each replaces.
			err = set(&r.u.Input, u.InputTokens, &r.u.Output, u.OutputTokens, &r.u.CacheWrite, u.CacheCreationTokens, &r.u.CacheRead, u.CacheReadTokens)
		}
	case OpenAI:
		if u != nil {
			r.seen = true
			in, out := u.InputTokens, u.OutputTokens
			if u.PromptTokens != nil {
				in = u.PromptTokens
			}
			if u.CompletionTokens != nil {
				out = u.CompletionTokens
			}
			var cached *int64
			if d := u.PromptDetails; d != nil {
				cached = d.CachedTokens
			}
			if d := u.InputTokensDetails; d != nil {
				cached = d.CachedTokens
			}
			err = set(&r.u.Input, in, &r.u.Output, out, &r.u.CacheRead, cached)
		}
	case Gemini:
		if g := ev.UsageMetadata; g != nil {
			r.seen = true
			var out *int64
			if g.CandidatesTokenCount != nil || g.ThoughtsTokenCount != nil {
				n := deref(g.CandidatesTokenCount) + deref(g.ThoughtsTokenCount)
				out = &n
			}
			err = set(&r.u.Input, g.PromptTokenCount, &r.u.Output, out, &r.u.CacheRead, g.CachedContentTokenCount)
		}
	}
	if err != nil {
		r.fail(err.Error())
	}
}

func deref(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

// set stores each present count (pairs of destination and value).
func set(pairs ...any) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		v := pairs[i+1].(*int64)
		if v == nil {
			continue
		}
		if *v < 0 {
			return errNegative
		}
		*pairs[i].(*int64) = *v
	}
	return nil
}

// Tokens is what a model call's usage counts against a token limit: every
// token the API reports processing, input, output and cache reads and
// writes. OpenAI's input already includes its cached tokens, so they are
// not added twice.
func Tokens(connector string, u *audit.Usage) int64 {
	n := u.Input + u.Output + u.CacheWrite
	if FormatOf(connector) != OpenAI {
		n += u.CacheRead
	}
	return n
}
