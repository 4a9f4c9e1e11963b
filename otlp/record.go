package otlp

import (
	"os"
	"os/user"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/version"
)

// ScopeName is the instrumentation scope of every exported audit record;
// readers of an export pick tf's records by it.
const ScopeName = audit.OTLPScope

// Attribute names of an exported record (see docs/otel.md). They are
// stable: dashboards and tf policy plan rely on them.
const (
	AttrKind         = "tf.record.kind"
	AttrSeq          = "tf.record.seq"
	AttrHash         = "tf.record.hash"
	AttrRequestID    = "tf.request_id"
	AttrGateway      = "tf.gateway"
	AttrActionType   = "tf.action.type"
	AttrConnector    = "tf.action.connector"
	AttrTarget       = "tf.action.target"
	AttrMethod       = "tf.request.method"
	AttrHost         = "tf.request.host"
	AttrDecision     = "tf.decision"
	AttrRule         = "tf.rule"
	AttrMatched      = "tf.rule.matched"
	AttrMonitor      = "tf.decision.monitor"
	AttrWould        = "tf.decision.would"
	AttrKillSwitch   = "tf.decision.kill_switch"
	AttrRevision     = "tf.policy.revision"
	AttrApproval     = "tf.approval.outcome"
	AttrStatus       = "tf.status"
	AttrError        = "tf.error"
	AttrDurationMS   = "tf.duration_ms"
	AttrEvent        = "tf.event"
	AttrModel        = "tf.usage.model"
	AttrInputTokens  = "tf.usage.input_tokens"
	AttrOutputTokens = "tf.usage.output_tokens"
	AttrMCPSession   = "tf.mcp.session"
	AttrMCPIsError   = "tf.mcp.is_error"
)

// fill makes l, a copy of the shipper's template record (which carries
// the resource and scope), the log record of one audit record: the body is
// the stored line byte for byte, so the hash chain can be checked from an
// export; the attributes repeat what queries need. attrs is scratch space
// the caller reuses; l keeps a copy of what it needs.
func fill(l *sdklog.Record, r *audit.Record, observed time.Time, attrs []attribute.KeyValue) []attribute.KeyValue {
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
		// The deciding rules: the one the decision names and every other
		// enforcing match with the same effect (deny wins, so several
		// deny rules decide together).
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

// eventName is the event name of a record kind, without a concatenation
// per record for the known kinds.
func eventName(k audit.Kind) string {
	switch k {
	case audit.KindDecision:
		return "tf.audit.decision"
	case audit.KindOutcome:
		return "tf.audit.outcome"
	case audit.KindEvent:
		return "tf.audit.event"
	}
	return "tf.audit." + string(k)
}

// newResource describes the shipping machine: service.name=tf, its
// version, host and user, and the gateway that ships.
func newResource(gateway string) *resource.Resource {
	attrs := []attribute.KeyValue{
		attribute.String("service.name", "tf"),
		attribute.String("service.version", version.Get().Short()),
		attribute.String(AttrGateway, gateway),
	}
	if h, err := os.Hostname(); err == nil {
		attrs = append(attrs, attribute.String("host.name", h))
	}
	if u, err := user.Current(); err == nil {
		attrs = append(attrs, attribute.String("user.name", u.Username))
	}
	return resource.NewSchemaless(attrs...)
}

// nowUTC is the default clock.
func nowUTC() time.Time { return time.Now().UTC() }
