package otlp

import (
	"os"
	"os/user"
	"time"

	"go.opentelemetry.io/otel/attribute"
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
