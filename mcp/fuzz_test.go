package mcp

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"testing"
	"unicode/utf8"
)

// The decoder agrees with encoding/json on every value it accepts, and
// accepts every valid JSON value without duplicate keys, invalid UTF-8 or
// deep nesting.
func TestDecoderMatchesEncodingJSON(t *testing.T) {
	for _, in := range []string{
		`{"a":"x\u00e9\ud83d\ude00\n\t\"\\\/","b":[1,-2.5e3,0.1,1E+2,true,false,null],"c":{}}`,
		`"\ud800"`, `"\udc00\ud800x"`, `[]`, `-0`, `123456789012345678901234567890`, `" ünïcödé "`,
		`"0123456789abcdefghijklmnopqrstuvwxyz0123456789\"abcdefgh"`,
	} {
		d := &decoder{b: []byte(in)}
		got, err := d.value()
		if err == nil {
			err = d.end()
		}
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		var want any
		if err := json.Unmarshal([]byte(in), &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %#v, want %#v", in, got, want)
		}
	}
	for _, in := range []string{`{"a":1,}`, `[1 2]`, `01`, `1.`, `1e`, `"\x"`, "\"a\x01\"", `tru`, `{"a" 1}`, `{1:2}`, `"\u12"`, `nul`, `-`, `[`, `{"a":1,"a":2}`} {
		d := &decoder{b: []byte(in)}
		_, err := d.value()
		if err == nil {
			err = d.end()
		}
		if err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func FuzzClassify(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"q":"x","n":[1,2,{"a":null}]}}}`,
		`[{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":"x","result":{}}]`,
		`{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///a"}}`,
		`{"jsonrpc":"2.0","id":3,"method":"prompts/get","params":{"name":"p","arguments":{"a":"\u00e9"}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call"}`,
		`{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"x"}}`,
		`"\ud83d\ude00"`, `[]`, `{}`, `7`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		msgs, _, err := Parse(body)
		if err != nil {
			return
		}
		// Whatever is accepted is valid JSON to a standard parser too: no
		// message reaches a server that tf read one way and it reads another.
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		actions, err := Actions("s", msgs)
		if err != nil {
			return
		}
		if len(actions) != len(msgs) {
			t.Fatalf("%d actions for %d messages", len(actions), len(msgs))
		}
		for i, m := range msgs {
			if m.Kind != Request || m.Method != "tools/call" {
				continue
			}
			var p struct {
				Name      string         `json:"name"`
				Arguments map[string]any `json:"arguments"`
			}
			if err := json.Unmarshal(m.Params, &p); err != nil {
				t.Fatalf("params %q: %v", m.Params, err)
			}
			if actions[i].Resource["tool"] != p.Name {
				t.Fatalf("tool %q, encoding/json reads %q", actions[i].Resource["tool"], p.Name)
			}
			if p.Arguments == nil {
				p.Arguments = map[string]any{}
			}
			if !reflect.DeepEqual(actions[i].Params, p.Arguments) {
				t.Fatalf("arguments %#v, encoding/json reads %#v", actions[i].Params, p.Arguments)
			}
		}
	})
}

// chunked reads its data a few bytes at a time, so that events and line
// ends straddle reads.
type chunked struct {
	data []byte
	n    int
}

func (c *chunked) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), c.n, len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func FuzzSSE(f *testing.F) {
	f.Add([]byte("event: message\ndata: {\"a\":1}\n\n: comment\r\ndata: x\r\ndata: y\r\n\r\nid: 7\rdata\r\r"), uint8(3))
	f.Add([]byte("data: only\n"), uint8(1))
	f.Add([]byte("\n\n\r\n\r"), uint8(2))
	f.Fuzz(func(t *testing.T, stream []byte, step uint8) {
		sc := NewSSEScanner(&chunked{data: stream, n: int(step%16) + 1}, 1<<20)
		var got []byte
		for {
			ev, err := sc.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(ev) == 0 {
				t.Fatal("empty event")
			}
			got = append(got, ev...)
			p := ParseEvent(ev)
			if p.HasData && utf8.Valid(p.Data) && !bytes.ContainsAny(p.Data, "\r") {
				// What Encode writes parses back to the same data.
				again := ParseEvent(p.Encode())
				if !bytes.Equal(again.Data, p.Data) {
					t.Fatalf("round trip: %q became %q", p.Data, again.Data)
				}
			}
		}
		// Events are passed on exactly as they came.
		if !bytes.Equal(got, stream) {
			t.Fatalf("events %q, stream %q", got, stream)
		}
	})
}

// FuzzAnswerReaders: the readers of answers and of messages too large to
// read whole never panic, agree with encoding/json on what they find, and
// redaction leaves valid JSON valid and without the secret.
func FuzzAnswerReaders(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"s3cret"}],"isError":true}}`,
		`{"jsonrpc":"2.0","id":"a","result":{"tools":[{"name":"x"}]}}`,
		`{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage","params":{}}`,
		`{"id":"\u0073\u0033cret","result":{"text":"\u0073\u0033cret"}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"x"}]`,
		`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"x","arguments":{"a":"`,
	} {
		f.Add([]byte(s))
	}
	const secret = "s3cret"
	mentions := func(s string) bool { return bytes.Contains([]byte(s), []byte(secret)) }
	redact := func(s string) string {
		return string(bytes.ReplaceAll([]byte(s), []byte(secret), []byte("[redacted]")))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, ok := responseHead(b)
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method *string         `json:"method"`
		}
		if ok && json.Valid(b) && json.Unmarshal(b, &m) == nil && m.Method == nil && h.id != nil {
			var a, c any
			if json.Unmarshal(h.id, &a) != nil || json.Unmarshal(m.ID, &c) != nil || !reflect.DeepEqual(a, c) {
				t.Fatalf("id %s, encoding/json %s", h.id, m.ID)
			}
		}
		if h.spelt && !bytes.Contains(b, []byte(`\u`)) && !bytes.Contains(b, []byte(`\/`)) {
			t.Fatalf("%s: a \\u or \\/ escape where there is none", b)
		}
		if id := leadingID(b); id != nil && !json.Valid(id) {
			t.Fatalf("leadingID %q", id)
		}
		listShape(h.result)
		ResultText(b)
		out, changed := RedactMessage(b, mentions, redact)
		if changed && json.Valid(b) {
			if !json.Valid(out) {
				t.Fatalf("redacting %s gave %s", b, out)
			}
			if bytes.Contains(out, []byte(secret)) {
				t.Fatalf("the secret is left in %s", out)
			}
		}
	})
}
