package mcp_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/tameflare/tf/connectors"
	"github.com/tameflare/tf/gateway"
	"github.com/tameflare/tf/mcp"
	"github.com/tameflare/tf/rules"
)

const benchPolicy = `version: 1
default: deny
mcp_servers:
  - {name: docs, url: "https://mcp.example.com/mcp"}
rules:
  - {name: files, actions: [mcp.docs.write_file], decision: allow}
  - {name: not-etc, actions: [mcp.docs.write_file], when: 'params.path startsWith "/etc"', decision: deny}
  - {name: no-delete, actions: [mcp.docs.delete], decision: deny}
  - {name: github, actions: ["github.*"], decision: allow}
`

// toolCall10KB returns a tools/call whose arguments are about 10 KB: a
// path and a file's content (a source file, escapes and all), and with
// mixed, forty small option objects besides.
func toolCall10KB(mixed bool) string {
	lines := 170
	var opts []string
	if mixed {
		lines = 125
		for i := 0; i < 40; i++ {
			opts = append(opts, fmt.Sprintf(`{"key":"option-%d","value":%d,"enabled":true}`, i, i*7))
		}
	}
	content := strings.Repeat(`package main\n\nfunc main() { println(\"hello, world\") }\n`, lines)
	return `{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"write_file","arguments":{"path":"/home/me/project/main.go","content":"` +
		content + `","options":[` + strings.Join(opts, ",") + `],"mode":420},"_meta":{"progressToken":"p1"}}}`
}

// Classifying and deciding a tools/call with 10 KB of arguments: the
// registry (with the MCP sniffer), the rules (one condition on the
// arguments) and the baseline, as the gateway runs them for every request.
// Reports the median.
func BenchmarkClassifyDecideToolCall10KB(b *testing.B) {
	b.Run("file", func(b *testing.B) { benchClassifyDecide(b, toolCall10KB(false)) })
	b.Run("mixed", func(b *testing.B) { benchClassifyDecide(b, toolCall10KB(true)) })
}

func benchClassifyDecide(b *testing.B, call string) {
	p, err := rules.LoadFS(fstest.MapFS{"tameflare.yaml": {Data: []byte(benchPolicy)}}, "p")
	if err != nil {
		b.Fatal(err)
	}
	reg := connectors.NewEmptyRegistry()
	// As the gateway sets it up: arguments no rule reads stay undecoded.
	reg.AddSniffer(mcp.NewConnector(func() []rules.MCPServer { return p.MCPServers }).DecodeParams(p.ParamsRead))
	body := []byte(call)
	u, _ := url.Parse("https://mcp.example.com/mcp")
	req := &connectors.Request{
		HTTP:   &http.Request{Method: "POST", URL: u, Host: u.Host, Header: http.Header{"Content-Type": {"application/json"}, "Mcp-Protocol-Version": {"2025-06-18"}}},
		Scheme: "https", Body: body,
	}
	d := &rules.Decider{Policy: p}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		actions, err := reg.Classify(req)
		if err != nil {
			b.Fatal(err)
		}
		dec := mcp.Baseline(&actions[0], d.Decide(&actions[0]))
		lat = append(lat, time.Since(t0))
		if dec.Effect != rules.Allow {
			b.Fatalf("%+v", dec)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "median-ns")
}

type allowAll struct{}

func (allowAll) Decide(_ context.Context, actions []rules.Action, err error) mcp.Ruling {
	ds := make([]rules.Decision, max(len(actions), 1))
	for i := range ds {
		ds[i].Effect = rules.Allow
	}
	return mcp.Ruling{RequestID: "x", Decisions: ds}
}

func (allowAll) HideItems() mcp.Hider { return nil }

// echoServer answers every request line at once with an empty result.
func echoServer(in io.Reader, out io.WriteCloser) {
	defer out.Close()
	br := bufio.NewReader(in)
	w := bufio.NewWriter(out)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			break
		}
		i := strings.Index(line, `"id":`)
		j := strings.IndexByte(line[i:], ',')
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"ok"}]}}`+"\n", line[i+5:i+j])
		if br.Buffered() == 0 {
			w.Flush()
		}
	}
	w.Flush()
}

// relayThroughput sends b.N small tools/call lines through a relay and
// waits for every answer; reports messages per second.
func relayThroughput(b *testing.B, gov mcp.Governor) {
	cin, cw := io.Pipe()
	cr, cout := io.Pipe()
	sin, sw := io.Pipe()
	sr, sout := io.Pipe()
	go echoServer(sin, sout)
	rl := &mcp.Relay{Server: "docs", Governor: gov, ClientIn: cin, ClientOut: cout, ServerIn: sw, ServerOut: sr}
	done := make(chan error, 1)
	go func() { done <- rl.Run(context.Background()); cout.Close() }()
	answered := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(cr)
		n := 0
		for sc.Scan() {
			n++
		}
		answered <- n
	}()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	w := bufio.NewWriter(cw)
	for i := 0; i < b.N; i++ {
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"write_file","arguments":{"path":"/tmp/a","content":"x"}}}`+"\n", i)
	}
	w.Flush()
	cw.Close()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	n := <-answered
	elapsed := time.Since(start)
	b.StopTimer()
	if n != b.N {
		b.Fatalf("%d answers for %d calls", n, b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
}

// The relay alone: parsing, classifying, ordering and forwarding.
func BenchmarkRelayThroughput(b *testing.B) { relayThroughput(b, allowAll{}) }

// The relay with a real gateway: every line decided by the rules and its
// decision and outcome written durably (fsync'd) to the audit log.
func BenchmarkRelayThroughputGateway(b *testing.B) {
	p, err := rules.LoadFS(fstest.MapFS{"tameflare.yaml": {Data: []byte(benchPolicy)}}, "p")
	if err != nil {
		b.Fatal(err)
	}
	g, err := gateway.Start(gateway.Config{Name: "bench", Home: b.TempDir(), Policy: p})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	relayThroughput(b, g.MCPGovernor("docs"))
}
