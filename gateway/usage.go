package gateway

import (
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/tameflare/tf/admin"
	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/connectors"
	"github.com/tameflare/tf/httpproxy"
	"github.com/tameflare/tf/rules"
	"github.com/tameflare/tf/usage"
)

// meterUsage reads the token usage of an allowed model call from its
// response as it streams to the agent, and puts it in the outcome record.
// Token limits that counted the call get its tokens.
func (g *Gateway) meterUsage(v *httpproxy.Verdict, id string, actions []rules.Action, decisions []rules.Decision, p *rules.Policy) {
	if len(actions) != 1 || !connectors.IsModelCall(actions[0].Type) {
		return
	}
	format := usage.FormatOf(actions[0].Connector)
	if format == 0 {
		return
	}
	if len(decisions[0].Counted) > 0 {
		// A token limit counts what the response reports: the agent
		// must not hide it by asking for an encoded answer.
		prep := v.Prepare
		v.Prepare = func(out *http.Request) {
			if prep != nil {
				prep(out)
			}
			out.Header.Set("Accept-Encoding", "identity")
		}
	}
	var (
		meter   *usage.Reader
		unknown string
	)
	inner := v.ModifyResponse
	v.ModifyResponse = func(res *http.Response) error {
		if inner != nil {
			if err := inner(res); err != nil {
				return err
			}
		}
		switch {
		case res.StatusCode/100 != 2:
			unknown = "" // an error answer has no usage to record
		case res.Body == nil || res.Body == http.NoBody:
			unknown = "the response has no body"
		case !identity(res.Header.Get("Content-Encoding")):
			unknown = "the response is " + res.Header.Get("Content-Encoding") + "-encoded"
		default:
			meter = usage.NewReader(res.Body, format, res.Header.Get("Content-Type"))
			res.Body = meter
		}
		return nil
	}
	done := v.Done
	v.Done = func(o httpproxy.Outcome) {
		var u *audit.Usage
		if meter != nil {
			mu := meter.Usage()
			u = &mu
		} else if unknown != "" {
			u = &audit.Usage{Unknown: unknown}
		}
		if u == nil {
			done(o)
			return
		}
		g.tokens.add(u)
		g.addTokens(p, &actions[0], &decisions[0], u)
		if u.Unknown == "" {
			g.metrics.Tokens(g.redact(u.Model), u.Input, u.Output, u.CacheRead, u.CacheWrite)
		}
		g.recordOutcomeUsage(id, o, u)
	}
}

// tokenTotals sums the session's model-call usage for tf status.
type tokenTotals struct {
	calls, unknown, input, output, cacheRead, cacheWrite atomic.Int64
}

func (t *tokenTotals) add(u *audit.Usage) {
	t.calls.Add(1)
	if u.Unknown != "" {
		t.unknown.Add(1)
		return
	}
	t.input.Add(u.Input)
	t.output.Add(u.Output)
	t.cacheRead.Add(u.CacheRead)
	t.cacheWrite.Add(u.CacheWrite)
}

func (t *tokenTotals) get() admin.Tokens {
	return admin.Tokens{Calls: t.calls.Load(), Unknown: t.unknown.Load(), Input: t.input.Load(), Output: t.output.Load(),
		CacheRead: t.cacheRead.Load(), CacheWrite: t.cacheWrite.Load()}
}

func identity(enc string) bool { return enc == "" || strings.EqualFold(enc, "identity") }
