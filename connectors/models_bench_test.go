package connectors

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkClassifyModelCall classifies a Claude Code-sized Messages API
// call (about 200 KB: a long system prompt, 20 tools with schemas, a
// conversation), the body read strictly through jsonbody.
func BenchmarkClassifyModelCall(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"model":"claude-sonnet-4-5","max_tokens":32000,"stream":true,"thinking":{"type":"enabled","budget_tokens":31999},"system":[{"type":"text","text":"`)
	sb.WriteString(strings.Repeat("You are a coding agent. ", 1000))
	sb.WriteString(`"}],"tools":[`)
	for i := range 20 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"name":"tool%d","description":"%s","input_schema":{"type":"object","properties":{"a":{"type":"string","description":"x"},"b":{"type":"array","items":{"type":"integer"}}},"required":["a"]}}`, i, strings.Repeat("does things ", 80))
	}
	sb.WriteString(`],"messages":[`)
	for i := range 100 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"role":"user","content":[{"type":"text","text":"%s"}]}`, strings.Repeat("line of code\\n", 100))
	}
	sb.WriteString(`]}`)
	body := []byte(sb.String())
	reg, err := NewRegistry(Options{})
	if err != nil {
		b.Fatal(err)
	}
	r := newRequest("POST", "api.anthropic.com", "/v1/messages", "", body, false)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		acts, err := reg.Classify(r)
		if err != nil || acts[0].Params["tools"] != 20 {
			b.Fatalf("%v %+v", err, acts)
		}
	}
}
