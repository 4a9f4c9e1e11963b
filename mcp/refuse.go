package mcp

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/tameflare/tf/connectors"
	"github.com/tameflare/tf/rules"
)

// JSON-RPC error codes of tf's answers.
const (
	// CodeRefused is the error code of a request the policy refused (in the
	// range JSON-RPC leaves to implementations).
	CodeRefused = -32090
	// CodeNotSent answers an allowed request of a batch that was refused
	// whole because another of its messages was.
	CodeNotSent = -32091
	// CodeParse and CodeInvalid are JSON-RPC's own: the body is not JSON,
	// or not a valid JSON-RPC message.
	CodeParse   = -32700
	CodeInvalid = -32600
)

// Refusal says why a message was refused.
type Refusal struct {
	// Type is the refused action's type, Rule the deciding rule (empty for
	// the policy default or the kill switch), Reason why.
	Type, Rule, Reason string
	Effect             rules.Effect
	KillSwitch         bool
	RequestID          string
}

// label names what decided, for a reader: the rule, else the default or
// the kill switch.
func (r Refusal) label() string {
	switch {
	case r.Rule != "":
		return r.Rule
	case r.KillSwitch:
		return "kill-switch"
	}
	return "policy-default"
}

type wireError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

type wireMessage struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  any             `json:"result,omitempty"`
	Error   *wireError      `json:"error,omitempty"`
}

type textContent struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type toolResult struct {
	Content []textContent  `json:"content"`
	IsError bool           `json:"isError"`
	Meta    map[string]any `json:"_meta,omitempty"`
}

// RefuseCall is the answer to a refused tools/call: a tool result with
// isError, whose one text block ("<rule>: <reason>") the agent's model
// reads and can act on. Claude Code keeps a server whose calls fail this
// way, and shows the model the first content block only, hence one.
func RefuseCall(id []byte, r Refusal) []byte {
	return encode(wireMessage{JSONRPC: "2.0", ID: id, Result: toolResult{
		Content: []textContent{{Type: "text", Text: r.label() + ": " + r.Reason}},
		IsError: true,
		Meta: map[string]any{
			"tameflare.dev/request_id": r.RequestID,
			"tameflare.dev/decision":   string(r.Effect),
			"tameflare.dev/rule":       r.Rule,
		},
	}})
}

// RefuseRequest is the answer to any other refused request: a JSON-RPC
// error whose message names the rule and the reason (clients often show
// the message alone) and whose data holds {rule, reason, request_id}.
func RefuseRequest(id []byte, r Refusal) []byte {
	return ErrorMessage(id, CodeRefused, fmt.Sprintf("tf refused %s: %s: %s", r.Type, r.label(), r.Reason),
		map[string]string{"rule": r.Rule, "reason": r.Reason, "request_id": r.RequestID, "decision": string(r.Effect)})
}

// ErrorMessage encodes a JSON-RPC error response; a nil id is null.
func ErrorMessage(id []byte, code int, msg string, data any) []byte {
	return encode(wireMessage{JSONRPC: "2.0", ID: id, Error: &wireError{Code: code, Message: msg, Data: data}})
}

// Answer returns tf's answer to a refused message: a tool result for a
// tools/call, a JSON-RPC error for another request, nil for a notification
// or a response (which nobody waits for).
func Answer(m *Message, r Refusal) []byte {
	if m.Kind != Request {
		return nil
	}
	if m.Method == "tools/call" {
		return RefuseCall(m.ID, r)
	}
	return RefuseRequest(m.ID, r)
}

func encode(v wireMessage) []byte {
	if v.ID == nil {
		v.ID = json.RawMessage("null")
	}
	b, err := json.Marshal(v)
	if err != nil {
		// Only strings and raw ids that the parser accepted go in.
		panic(fmt.Sprintf("mcp: encoding an answer: %v", err))
	}
	return b
}

// AnswerAll returns the answers to the messages of a refused request or
// line, one per request, in order: the refused ones with their refusal,
// the allowed ones of a refused batch with CodeNotSent. decisions are
// per message; refusal describes the deciding one.
func AnswerAll(msgs []Message, decisions []rules.Decision, refusal Refusal, typeOf func(i int) string) [][]byte {
	var out [][]byte
	for i := range msgs {
		m := &msgs[i]
		if m.Kind != Request {
			continue
		}
		d := decisions[i]
		if d.Effect == rules.Allow {
			out = append(out, ErrorMessage(m.ID, CodeNotSent,
				fmt.Sprintf("tf did not send this message: another message of its batch was refused (%s: %s)", refusal.label(), refusal.Reason),
				map[string]string{"rule": refusal.Rule, "reason": refusal.Reason, "request_id": refusal.RequestID}))
			continue
		}
		out = append(out, Answer(m, Refusal{Type: typeOf(i), Rule: d.Rule, Reason: d.Reason, Effect: d.Effect,
			KillSwitch: d.KillSwitch, RequestID: refusal.RequestID}))
	}
	return out
}

// join encodes answers as one body: the answer itself for a single
// message, an array for a batch.
func join(answers [][]byte, batch bool) []byte {
	if !batch && len(answers) == 1 {
		return answers[0]
	}
	b := []byte{'['}
	for i, a := range answers {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, a...)
	}
	return append(b, ']')
}

// RefuseEach answers a refused MCP request in JSON-RPC, message by
// message, with status 200 so that the client reads the answers as the
// server's (an HTTP error status would make an SDK client fail the whole
// exchange). A request that could not be classified is answered with a
// JSON-RPC error and status 400, as a server answers what it cannot read.
// ok is false where JSON-RPC has no answer to give (a refused
// notification, a GET stream): the gateway's own refusal applies.
func (c *Connector) RefuseEach(r *connectors.Request, actions []rules.Action, decisions []rules.Decision, requestID string) (int, http.Header, []byte, bool) {
	if r.HTTP.Method != http.MethodPost || len(actions) == 0 {
		return 0, nil, nil, false
	}
	h := http.Header{"Content-Type": {"application/json"}}
	if actions[0].Type == "tf.unclassified" {
		var id []byte
		code := CodeInvalid
		msgs, batch, err := Parse(r.Body)
		switch {
		case r.Truncated:
			id = leadingID(r.Body)
		case err != nil && !isNotJSONRPC(err):
			code = CodeParse
		case err == nil && !batch && msgs[0].Kind == Request:
			id = msgs[0].ID
		}
		reason := decisions[0].Reason
		body := ErrorMessage(id, code, reason, map[string]string{"rule": "", "reason": reason, "request_id": requestID})
		return http.StatusBadRequest, h, body, true
	}
	body, err := decodedBody(r, false)
	if err != nil {
		return 0, nil, nil, false
	}
	msgs, batch, err := Parse(body)
	if err != nil || len(msgs) != len(actions) || len(decisions) != len(actions) {
		return 0, nil, nil, false
	}
	k := strongest(decisions)
	d := decisions[k]
	ref := Refusal{Type: actions[k].Type, Rule: d.Rule, Reason: d.Reason, Effect: d.Effect, KillSwitch: d.KillSwitch, RequestID: requestID}
	answers := AnswerAll(msgs, decisions, ref, func(i int) string { return actions[i].Type })
	if len(answers) == 0 {
		return 0, nil, nil, false
	}
	return http.StatusOK, h, join(answers, batch), true
}

func isNotJSONRPC(err error) bool { return errors.Is(err, ErrNotJSONRPC) }

// strongest returns the index of the decision that decides several: the
// first deny, else the first hold, else the first.
func strongest(ds []rules.Decision) int {
	rank := func(e rules.Effect) int {
		switch e {
		case rules.Deny:
			return 3
		case rules.RequireApproval:
			return 2
		}
		return 1
	}
	best := 0
	for i := range ds {
		if rank(ds[i].Effect) > rank(ds[best].Effect) {
			best = i
		}
	}
	return best
}
