package otlp

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	collogpb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/rules"
)

// refBody is the request body the official OTLP/HTTP exporter posts for a
// batch, built the way the shipper built it before it encoded requests
// itself: an SDK template record with the resource and scope, filled in by
// refFill, then the exporter's transform and proto.Marshal. It is the
// reference the encoder is held to.
func refBody(t testing.TB, gateway string, batch []*audit.Record) []byte {
	t.Helper()
	bodies := make(chan []byte, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies <- b
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exp, err := otlploghttp.New(ctx, otlploghttp.WithEndpointURL(srv.URL+"/v1/logs"),
		otlploghttp.WithRetry(otlploghttp.RetryConfig{Enabled: false}))
	if err != nil {
		t.Fatal(err)
	}
	defer exp.Shutdown(ctx)
	keep := &keepProcessor{}
	provider := sdklog.NewLoggerProvider(sdklog.WithResource(newResource(gateway)), sdklog.WithProcessor(keep),
		sdklog.WithAttributeValueLengthLimit(-1), sdklog.WithAllowKeyDuplication())
	defer provider.Shutdown(ctx)
	provider.Logger(ScopeName).Emit(ctx, otellog.Record{})
	recs := make([]sdklog.Record, len(batch))
	var attrs []attribute.KeyValue
	for i, r := range batch {
		recs[i] = keep.recs[0]
		attrs = refFill(&recs[i], r, time.Now(), attrs)
	}
	if err := exp.Export(ctx, recs); err != nil {
		t.Fatal(err)
	}
	return <-bodies
}

// keepProcessor keeps the records emitted to it.
type keepProcessor struct{ recs []sdklog.Record }

func (c *keepProcessor) OnEmit(_ context.Context, r *sdklog.Record) error {
	c.recs = append(c.recs, r.Clone())
	return nil
}
func (c *keepProcessor) Enabled(context.Context, sdklog.EnabledParameters) bool { return true }
func (c *keepProcessor) Shutdown(context.Context) error                         { return nil }
func (c *keepProcessor) ForceFlush(context.Context) error                       { return nil }

// refFill is the shipper's former fill: the SDK log record of one audit
// record, as docs/otel.md describes it.
func refFill(l *sdklog.Record, r *audit.Record, observed time.Time, attrs []attribute.KeyValue) []attribute.KeyValue {
	l.SetTimestamp(r.Time)
	l.SetObservedTimestamp(observed)
	l.SetEventName(eventName(r.Kind))
	l.SetBody(attribute.StringValue(string(r.Line)))
	sev, text := otellog.SeverityInfo, "INFO"
	attrs = append(attrs[:0],
		attribute.String(AttrKind, string(r.Kind)),
		attribute.Int64(AttrSeq, int64(r.Seq)),
		attribute.String(AttrHash, r.Hash),
	)
	str := func(k, v string) {
		if v != "" {
			attrs = append(attrs, attribute.String(k, v))
		}
	}
	str(AttrRequestID, r.RequestID)
	str(AttrGateway, r.Gateway)
	if a := r.Action; a != nil {
		str(AttrActionType, a.Type)
		str(AttrConnector, a.Connector)
		str(AttrTarget, r.Target())
		str(AttrMethod, a.Request.Method)
		str(AttrHost, a.Request.Host)
	}
	if d := r.Decision; d != nil {
		str(AttrDecision, string(d.Effect))
		names := make([]string, 0, 2)
		if d.Rule != "" {
			names = append(names, d.Rule)
		}
		var matched []string
		for _, m := range d.Matched {
			matched = append(matched, m.Rule)
			if m.Decision == d.Effect && !m.Monitor && m.Rule != d.Rule {
				names = append(names, m.Rule)
			}
		}
		str(AttrRule, strings.Join(names, ","))
		str(AttrMatched, strings.Join(matched, ","))
		if d.Monitor {
			attrs = append(attrs, attribute.Bool(AttrMonitor, true))
			str(AttrWould, string(d.Would))
		}
		if d.KillSwitch {
			attrs = append(attrs, attribute.Bool(AttrKillSwitch, true))
		}
		str(AttrRevision, d.Revision)
		if d.Effect != "allow" {
			sev, text = otellog.SeverityWarn, "WARN"
		}
	}
	if r.Approval != nil {
		str(AttrApproval, r.Approval.Outcome)
	}
	if r.Kind == audit.KindOutcome {
		if r.Status != 0 {
			attrs = append(attrs, attribute.Int(AttrStatus, r.Status))
		}
		attrs = append(attrs, attribute.Int64(AttrDurationMS, r.DurationMS))
	}
	if r.Error != "" {
		str(AttrError, r.Error)
		sev, text = otellog.SeverityError, "ERROR"
	}
	str(AttrEvent, r.Event)
	if u := r.Usage; u != nil {
		str(AttrModel, u.Model)
		attrs = append(attrs, attribute.Int64(AttrInputTokens, u.Input), attribute.Int64(AttrOutputTokens, u.Output))
	}
	if m := r.MCP; m != nil {
		str(AttrMCPSession, m.Session)
		if m.IsError != nil {
			attrs = append(attrs, attribute.Bool(AttrMCPIsError, *m.IsError))
		}
	}
	l.SetSeverity(sev)
	l.SetSeverityText(text)
	l.SetAttributes(attrs...)
	return attrs
}

// everyKind is a record of every kind with every optional field, set and
// unset, including empty strings, unicode and a long line.
func everyKind() []*audit.Record {
	yes, no := true, false
	push := func() *rules.Action {
		return &rules.Action{Type: "github.repo.push", Connector: "github",
			Resource: map[string]string{"owner": "acme", "repo": "app"},
			Params:   map[string]any{"branch": "main"},
			Request:  rules.Request{Method: "POST", Host: "github.com", Path: "/acme/app.git/git-receive-pack"}}
	}
	long := strings.Repeat("ünïcødé ✓ 日本語 ", 2000) // a line of ~60 KB
	return []*audit.Record{
		decision(0), decision(1), decision(2),
		// Several deny rules decide together; a monitored match and an
		// allow match are matched but do not decide.
		{Kind: audit.KindDecision, RequestID: "r-multi", Gateway: "ci", Action: push(),
			Decision: &rules.Decision{Effect: rules.Deny, Rule: "no-main", Reason: "protected", Revision: "rev1",
				Matched: []rules.Match{{Rule: "allow-acme", Decision: rules.Allow}, {Rule: "no-main", Decision: rules.Deny},
					{Rule: "watch", Decision: rules.Deny, Monitor: true}, {Rule: "no-force", Decision: rules.Deny}}}},
		// Monitor mode let through what enforcing would deny.
		{Kind: audit.KindDecision, RequestID: "r-mon", Gateway: "laptop", Action: push(),
			Decision: &rules.Decision{Effect: rules.Allow, Monitor: true, Would: rules.Deny, WouldRule: "no-main",
				Matched: []rules.Match{{Rule: "no-main", Decision: rules.Deny, Monitor: true}}}},
		// The kill switch: no rule, no revision.
		{Kind: audit.KindDecision, Action: push(), Decision: &rules.Decision{Effect: rules.Deny, KillSwitch: true}},
		// The default, with an approval.
		{Kind: audit.KindDecision, RequestID: "r-appr", Gateway: "laptop", Action: push(),
			Decision: &rules.Decision{Effect: rules.RequireApproval, Rule: "ask", Default: true},
			Approval: &audit.Approval{ID: "ap-1", Approver: "bob", Outcome: "approved"}},
		// An MCP tool call.
		{Kind: audit.KindDecision, RequestID: "r-mcp", Gateway: "laptop",
			Action: &rules.Action{Type: "mcp.github.delete_repository", Connector: "mcp",
				Resource: map[string]string{"server": "github", "tool": "delete_repository"}},
			Decision: &rules.Decision{Effect: rules.Deny, Rule: "no-delete", Matched: []rules.Match{{Rule: "no-delete", Decision: rules.Deny}}},
			MCP:      &audit.MCP{Session: "sess-1", ID: "7"}},
		{Kind: audit.KindOutcome, RequestID: "r-mcp", Gateway: "laptop", Status: 200, DurationMS: 12, MCP: &audit.MCP{Session: "sess-1", IsError: &yes}},
		{Kind: audit.KindOutcome, RequestID: "r-mcp2", Gateway: "laptop", Status: 200, MCP: &audit.MCP{IsError: &no}},
		{Kind: audit.KindOutcome, RequestID: "r-mcp3", Status: 200, MCP: &audit.MCP{Session: "s"}},
		// An outcome that failed without a status, and a model call.
		{Kind: audit.KindOutcome, RequestID: "r-err", Gateway: "laptop", Error: "upstream reset the connection", DurationMS: 30000},
		{Kind: audit.KindOutcome, RequestID: "r-llm", Gateway: "laptop", Status: 200, DurationMS: 1500,
			Usage: &audit.Usage{Model: "claude-✓", Input: 1 << 40, Output: 0}},
		{Kind: audit.KindOutcome, RequestID: "r-llm2", Status: 529, Usage: &audit.Usage{Unknown: "malformed"}},
		// Events, with and without an error, unicode and a long line.
		{Kind: audit.KindEvent, Gateway: "laptop", Event: audit.EventKillSwitchActivated, Details: map[string]any{"by": "ops"}},
		{Kind: audit.KindEvent, Event: "policy.failed", Error: "rules.yaml:3:1: unknown key ✗"},
		{Kind: audit.KindEvent, Gateway: "日本", Event: "note", Details: map[string]any{"text": long}},
		{Kind: audit.KindOutcome, RequestID: "r-empty", Status: 0, Error: ""},
	}
}

// logged appends recs to a fresh log and reads them back as the shipper
// sees them (seq, hash, time and the stored line set).
func logged(t testing.TB, recs []*audit.Record) []*audit.Record {
	t.Helper()
	home := t.TempDir()
	l, err := audit.Open(audit.Dir(home), audit.Options{Gateway: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := l.Append(context.Background(), r); err != nil {
			t.Fatalf("appending %+v: %v", r, err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var out []*audit.Record
	if err := audit.Scan(audit.Dir(home), audit.Filter{}, func(r *audit.Record) error { out = append(out, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(out) != len(recs) {
		t.Fatalf("read %d records back, wrote %d", len(out), len(recs))
	}
	return out
}

// unmarshalReq decodes a request body with the official types and sets
// every observed time to 0, the one field that differs by when it ran.
func unmarshalReq(t testing.TB, body []byte) *collogpb.ExportLogsServiceRequest {
	t.Helper()
	var req collogpb.ExportLogsServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		t.Fatalf("the body does not unmarshal as an ExportLogsServiceRequest: %v", err)
	}
	for _, rl := range req.ResourceLogs {
		for _, sl := range rl.ScopeLogs {
			for _, lr := range sl.LogRecords {
				if lr.ObservedTimeUnixNano == 0 {
					t.Fatal("a record has no observed time")
				}
				lr.ObservedTimeUnixNano = 0
			}
		}
	}
	return &req
}

// The encoder's body is, field for field, what the official exporter sent.
func TestEncoderMatchesTheOfficialExporter(t *testing.T) {
	recs := logged(t, everyKind())
	e, err := newEncoder("laptop")
	if err != nil {
		t.Fatal(err)
	}
	var buf []byte
	check := func(name string, batch []*audit.Record) {
		t.Helper()
		want := unmarshalReq(t, refBody(t, "laptop", batch))
		buf = e.encode(batch, time.Now())
		got := unmarshalReq(t, buf)
		if !proto.Equal(got, want) {
			t.Fatalf("%s: the encoder's request differs from the official exporter's:\n got %s\nwant %s", name,
				prototext.Format(got), prototext.Format(want))
		}
	}
	check("every kind in one batch", recs)
	for i, r := range recs {
		check(string(r.Kind)+" "+r.RequestID+" alone", recs[i:i+1])
	}
	// The buffer is reused: a smaller batch after a larger one.
	check("after reuse", recs[:2])
}

// A line that is not UTF-8 (the log was damaged) still makes a request a
// collector can decode: a protobuf string must be UTF-8.
func TestEncoderRepairsALineThatIsNotUTF8(t *testing.T) {
	recs := logged(t, []*audit.Record{decision(0)})
	r := *recs[0]
	r.Line = append([]byte("{\"bad\":\"\xff\xfe\"}"), r.Line...)
	e, err := newEncoder("laptop")
	if err != nil {
		t.Fatal(err)
	}
	req := unmarshalReq(t, e.encode([]*audit.Record{&r}, time.Now()))
	body := req.ResourceLogs[0].ScopeLogs[0].LogRecords[0].Body.GetStringValue()
	if !utf8.ValidString(body) || !strings.HasPrefix(body, "{\"bad\":\"\uFFFD") || !strings.HasSuffix(body, string(recs[0].Line)) {
		t.Fatalf("body %q", body)
	}
}

// BenchmarkEncode is the encoder's cost per record, off the decision
// path: a batch of 1,024 of a gateway's records (a decision and its
// outcome per request) into a reused buffer.
func BenchmarkEncode(b *testing.B) {
	recs := make([]*audit.Record, 1024)
	for i := range recs {
		recs[i] = gatewayRecord(i)
	}
	batch := logged(b, recs)
	e, err := newEncoder("bench")
	if err != nil {
		b.Fatal(err)
	}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = e.encode(batch, time.Now())
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/record")
	b.ReportMetric(float64(len(buf))/float64(len(batch)), "bytes/record")
}

// FuzzEncode: any record's fields make a request that unmarshals with the
// official types and gives back the stored line as the body and the
// attributes the SDK path gave.
func FuzzEncode(f *testing.F) {
	f.Add(uint8(0), uint64(1), "req-1", "laptop", "github.repo.push", "acme", "app", "deny", "r1", "r2", "", "", int64(200), int64(3), int64(10), true, false, []byte(`{"seq":1}`))
	f.Add(uint8(1), uint64(1<<63), "", "", "", "", "", "", "", "", "boom ✗", "kill_switch.activated", int64(-1), int64(-5), int64(0), false, true, []byte("\xff\x00"))
	f.Add(uint8(2), uint64(0), "日本", "g", "mcp.x.y", "", "", "allow", "", "", "", "", int64(0), int64(0), int64(1<<62), true, true, []byte(""))
	keep := &keepProcessor{}
	provider := sdklog.NewLoggerProvider(sdklog.WithResource(newResource("fuzz")), sdklog.WithProcessor(keep),
		sdklog.WithAttributeValueLengthLimit(-1), sdklog.WithAllowKeyDuplication())
	provider.Logger(ScopeName).Emit(context.Background(), otellog.Record{})
	tmpl := keep.recs[0]
	e, err := newEncoder("fuzz")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, kind uint8, seq uint64, reqID, gateway, typ, owner, repo, effect, rule, rule2, errMsg, event string,
		status, duration, tokens int64, flagA, flagB bool, line []byte) {
		v := func(s string) string { return strings.ToValidUTF8(s, "?") }
		r := &audit.Record{Kind: []audit.Kind{audit.KindDecision, audit.KindOutcome, audit.KindEvent, audit.Kind(v(typ))}[kind%4],
			Seq: seq, Time: time.Unix(0, duration*1e6+tokens), RequestID: v(reqID), Gateway: v(gateway), Hash: v(rule2 + rule),
			Error: v(errMsg), Event: v(event), Status: int(status), DurationMS: duration, Line: line}
		switch r.Kind {
		case audit.KindDecision:
			r.Action = &rules.Action{Type: v(typ), Connector: v(owner), Resource: map[string]string{"owner": v(owner), "repo": v(repo)},
				Request: rules.Request{Method: v(effect), Host: v(repo)}}
			r.Decision = &rules.Decision{Effect: rules.Effect(v(effect)), Rule: v(rule), Monitor: flagA, KillSwitch: flagB, Would: rules.Effect(v(rule2)),
				Matched: []rules.Match{{Rule: v(rule2), Decision: rules.Effect(v(effect))}, {Rule: v(rule), Decision: rules.Deny, Monitor: flagB}}}
			if flagA {
				r.Approval = &audit.Approval{ID: "a", Outcome: v(errMsg)}
			}
		case audit.KindOutcome:
			r.Usage = &audit.Usage{Model: v(event), Input: tokens, Output: -tokens}
			if flagB {
				r.MCP = &audit.MCP{Session: v(reqID), IsError: &flagA}
			}
		}
		req := unmarshalReq(t, e.encode([]*audit.Record{r}, time.Now()))
		lr := req.ResourceLogs[0].ScopeLogs[0].LogRecords[0]
		if got, want := lr.Body.GetStringValue(), strings.ToValidUTF8(string(line), "\uFFFD"); got != want {
			t.Fatalf("body %q, want %q", got, want)
		}
		if lr.TimeUnixNano != unixNano(r.Time) {
			t.Fatalf("time %d, want %d", lr.TimeUnixNano, unixNano(r.Time))
		}
		ref := tmpl
		want := refFill(&ref, r, time.Now(), nil)
		if len(lr.Attributes) != len(want) {
			t.Fatalf("%d attributes, want %d", len(lr.Attributes), len(want))
		}
		for i, kv := range want {
			got := lr.Attributes[i]
			var same bool
			switch kv.Value.Type() {
			case attribute.STRING:
				_, isStr := got.Value.Value.(*commonpb.AnyValue_StringValue)
				same = isStr && got.Value.GetStringValue() == kv.Value.AsString()
			case attribute.INT64:
				_, isInt := got.Value.Value.(*commonpb.AnyValue_IntValue)
				same = isInt && got.Value.GetIntValue() == kv.Value.AsInt64()
			case attribute.BOOL:
				_, isBool := got.Value.Value.(*commonpb.AnyValue_BoolValue)
				same = isBool && got.Value.GetBoolValue() == kv.Value.AsBool()
			}
			if got.Key != string(kv.Key) || !same {
				t.Fatalf("attribute %d: %s=%v, want %s=%v", i, got.Key, got.Value, kv.Key, kv.Value.Emit())
			}
		}
		if lr.SeverityText != ref.SeverityText() || int(lr.SeverityNumber) != int(ref.Severity()) || lr.EventName != eventName(r.Kind) {
			t.Fatalf("severity %v %q, event %q", lr.SeverityNumber, lr.SeverityText, lr.EventName)
		}
	})
}
