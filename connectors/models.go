package connectors

import (
	"errors"
	"fmt"
	"strings"

	"github.com/tameflare/tf/jsonbody"
	"github.com/tameflare/tf/rules"
)

// The model APIs coding agents talk to: anthropic (Claude Code), openai
// (Codex CLI) and google (Gemini CLI). Each is a route table from method
// and path to action, plus the few request fields a rule wants of a model
// call (model, token cap, streaming, tools). An agent's own model API is
// the one endpoint every session needs, so it gets names a policy can
// allow on purpose instead of a blanket http.* rule.

// modelRoute is one route of a model API.
type modelRoute struct {
	method, path, action string
	// body names the request body reader of a model call; "" reads none.
	body modelBody
}

// modelBody reads the rule-relevant fields of a model call's JSON body.
type modelBody int

const (
	noBody         modelBody = iota
	anthropicCall            // model, max_tokens, stream, tools, thinking
	anthropicCount           // model, tools
	openaiCall               // model, stream, tools, max_output_tokens / max_tokens / max_completion_tokens
	openaiModel              // model
	googleCall               // tools, generationConfig.maxOutputTokens
)

// modelAPI is one model API connector.
type modelAPI struct {
	name   string
	hosts  map[string]bool
	router router[*modelRoute]
	// colonPaths: Google's paths end in a custom method after a colon
	// (models/gemini-2.5-pro:generateContent); the connector splits it.
	colonPaths bool
}

var _ Connector = (*modelAPI)(nil)

func (c *modelAPI) Name() string             { return c.name }
func (c *modelAPI) Handles(host string) bool { return c.hosts[host] }

func newModelAPI(name string, hosts []string, routes []modelRoute, colon bool) *modelAPI {
	c := &modelAPI{name: name, hosts: map[string]bool{}, colonPaths: colon}
	for _, h := range hosts {
		c.hosts[h] = true
	}
	for i := range routes {
		if err := c.router.add(routes[i].method, routes[i].path, &routes[i]); err != nil {
			panic(fmt.Sprintf("connectors: %s route table: %v", name, err)) // a static table
		}
	}
	return c
}

// anthropicRoutes cover api.anthropic.com (the Messages API and its
// neighbours), Claude Code's own service endpoints, its telemetry, and the
// OAuth token endpoint of subscription logins (console.anthropic.com,
// platform.claude.com).
var anthropicRoutes = []modelRoute{
	{"POST", "/v1/messages", "anthropic.messages.create", anthropicCall},
	{"POST", "/v1/messages/count_tokens", "anthropic.messages.count_tokens", anthropicCount},
	{"GET", "/v1/models", "anthropic.models.list", noBody},
	{"GET", "/v1/models/{model}", "anthropic.models.get", noBody},
	{"POST", "/v1/messages/batches", "anthropic.batches.create", noBody},
	{"GET", "/v1/messages/batches", "anthropic.batches.list", noBody},
	{"GET", "/v1/messages/batches/{id}", "anthropic.batches.get", noBody},
	{"GET", "/v1/messages/batches/{id}/results", "anthropic.batches.results", noBody},
	{"POST", "/v1/messages/batches/{id}/cancel", "anthropic.batches.cancel", noBody},
	{"DELETE", "/v1/messages/batches/{id}", "anthropic.batches.delete", noBody},
	{"POST", "/v1/files", "anthropic.files.create", noBody},
	{"GET", "/v1/files", "anthropic.files.list", noBody},
	{"GET", "/v1/files/{id}", "anthropic.files.get", noBody},
	{"GET", "/v1/files/{id}/content", "anthropic.files.download", noBody},
	{"DELETE", "/v1/files/{id}", "anthropic.files.delete", noBody},
	{"POST", "/v1/oauth/token", "anthropic.oauth.token", noBody},
	{"GET", "/api/claude_code/{endpoint...}", "anthropic.claude_code.get", noBody},
	{"POST", "/api/claude_code/{endpoint...}", "anthropic.claude_code.post", noBody},
	{"GET", "/api/claude_cli/{endpoint...}", "anthropic.claude_code.get", noBody},
	{"GET", "/api/claude_code_penguin_mode", "anthropic.claude_code.get", noBody},
	{"POST", "/api/eval/{client}", "anthropic.feature_flags.evaluate", noBody},
	{"GET", "/api/directory/server-urls", "anthropic.mcp_directory.get", noBody},
	{"POST", "/api/event_logging/{endpoint...}", "anthropic.telemetry.send", noBody},
	{"POST", "/api/claude_cli_feedback", "anthropic.feedback.send", noBody},
	{"GET", "/api/oauth/profile", "anthropic.oauth.profile", noBody},
	{"GET", "/api/oauth/claude_cli/roles", "anthropic.oauth.roles", noBody},
	{"POST", "/api/oauth/claude_cli/create_api_key", "anthropic.oauth.create_api_key", noBody},
	{"GET", "/api/hello", "anthropic.connectivity.check", noBody},
	{"GET", "/v1/oauth/hello", "anthropic.connectivity.check", noBody},
}

// openaiRoutes cover api.openai.com, the token endpoint of ChatGPT
// logins (auth.openai.com), Codex's model calls under a ChatGPT login
// (chatgpt.com/backend-api/codex) and Codex's OpenTelemetry export
// (ab.chatgpt.com/otlp, zstd-compressed protobuf, so its body is not
// read); the rest of chatgpt.com is openai.api.<method>.
var openaiRoutes = []modelRoute{
	{"POST", "/v1/responses", "openai.responses.create", openaiCall},
	{"GET", "/v1/responses/{id}", "openai.responses.get", noBody},
	{"DELETE", "/v1/responses/{id}", "openai.responses.delete", noBody},
	{"POST", "/v1/responses/{id}/cancel", "openai.responses.cancel", noBody},
	{"GET", "/v1/responses/{id}/input_items", "openai.responses.get", noBody},
	{"POST", "/v1/chat/completions", "openai.chat.create", openaiCall},
	{"POST", "/v1/completions", "openai.completions.create", openaiCall},
	{"POST", "/v1/embeddings", "openai.embeddings.create", openaiModel},
	{"GET", "/v1/models", "openai.models.list", noBody},
	{"GET", "/v1/models/{model}", "openai.models.get", noBody},
	{"POST", "/v1/files", "openai.files.create", noBody},
	{"GET", "/v1/files", "openai.files.list", noBody},
	{"GET", "/v1/files/{id}", "openai.files.get", noBody},
	{"GET", "/v1/files/{id}/content", "openai.files.download", noBody},
	{"DELETE", "/v1/files/{id}", "openai.files.delete", noBody},
	{"POST", "/oauth/token", "openai.oauth.token", noBody},
	// Codex CLI signed in with ChatGPT calls the Responses API there.
	{"POST", "/backend-api/codex/responses", "openai.responses.create", openaiCall},
	{"POST", "/otlp/v1/{signal}", "openai.telemetry.send", noBody},
}

// googleRoutes cover the Gemini API (generativelanguage.googleapis.com).
// The custom method after the colon picks the action (googleMethods).
var googleRoutes = []modelRoute{
	{"GET", "/{version}/models", "google.models.list", noBody},
	{"GET", "/{version}/models/{model}", "google.models.get", noBody},
	{"POST", "/{version}/models/{model}", "", googleCall},
}

// googleMethods maps a Gemini custom method to its action.
var googleMethods = map[string]string{
	"generateContent":       "google.models.generate_content",
	"streamGenerateContent": "google.models.stream_generate_content",
	"countTokens":           "google.models.count_tokens",
	"embedContent":          "google.models.embed_content",
	"batchEmbedContents":    "google.models.batch_embed_contents",
}

// NewAnthropic returns the anthropic connector.
func NewAnthropic() Connector {
	return newModelAPI("anthropic", []string{"api.anthropic.com", "console.anthropic.com", "platform.claude.com"}, anthropicRoutes, false)
}

// NewOpenAI returns the openai connector.
func NewOpenAI() Connector {
	return newModelAPI("openai", []string{"api.openai.com", "auth.openai.com", "chatgpt.com", "ab.chatgpt.com"}, openaiRoutes, false)
}

// NewGoogle returns the google connector (the Gemini API).
func NewGoogle() Connector {
	return newModelAPI("google", []string{"generativelanguage.googleapis.com"}, googleRoutes, true)
}

// Classify returns the action of one model API request; a request no
// route knows is <name>.api.<method> with params.path.
func (c *modelAPI) Classify(r *Request) ([]rules.Action, error) {
	path := r.escapedPath()
	var sp splitPath
	var m match
	var route *modelRoute
	ok := false
	if sp.split(path) {
		route, ok = c.router.lookup(r.HTTP.Method, &sp, &m)
	}
	unmatched := []rules.Action{{
		Connector: c.name,
		Type:      c.name + ".api." + methodVerb(r.HTTP.Method),
		Params:    map[string]any{"path": unescapePath(path)},
	}}
	if !ok {
		return unmatched, nil
	}
	a := rules.Action{Connector: c.name, Type: route.action, Params: map[string]any{}}
	if route.path == "/api/claude_code_penguin_mode" {
		a.Params["endpoint"] = "penguin_mode"
	}
	for i := 0; i < m.n; i++ {
		if name := m.captures[i].name; name != "version" {
			a.Params[name] = m.value(i)
		}
	}
	if model, ok := a.Params["model"].(string); ok && c.colonPaths {
		name, method, hasMethod := strings.Cut(model, ":")
		if route.action == "" {
			action := googleMethods[method]
			if !hasMethod || action == "" {
				return unmatched, nil
			}
			a.Type = action
			a.Params["stream"] = method == "streamGenerateContent"
		} else if hasMethod {
			return unmatched, nil
		}
		a.Params["model"] = strings.TrimPrefix(name, "models/")
	}
	if route.body != noBody {
		if err := modelParams(route.body, r, a.Params); err != nil {
			return nil, fmt.Errorf("%s %s (%s): %w", r.HTTP.Method, unescapePath(path), a.Type, err)
		}
	}
	return []rules.Action{a}, nil
}

// maxModelName bounds a recorded model name: a rule compares names, and a
// megabyte of one would only bloat the audit log.
const maxModelName = 256

// modelParams reads the rule-relevant fields of a model call's body into
// params. A model call's body is mostly the conversation and can outgrow
// the inspected prefix in a long session; such a call is not refused here
// (it would end the session) but carries params.body_truncated = true and
// none of the body's fields. The gateway refuses it when a rule that
// applies reads params (see gateway/truncated.go): the fields it would
// read may lie past the prefix.
func modelParams(kind modelBody, r *Request, params map[string]any) error {
	if len(r.Body) == 0 && !r.Truncated {
		if kind == googleCall {
			return nil // a Gemini call names its model in the path
		}
		return errors.New("the request has no body")
	}
	if r.Truncated {
		params["body_truncated"] = true
		return nil
	}
	if kind == anthropicCall || kind == openaiCall {
		params["stream"] = false // the APIs' default
	}
	return jsonbody.Members(r.Body, func(name, raw []byte) error {
		key := string(name)
		switch kind {
		case anthropicCall, anthropicCount:
			switch key {
			case "model":
				return modelString(params, "model", raw)
			case "tools":
				return countElements(params, "tools", raw)
			}
			if kind == anthropicCount {
				return nil
			}
			switch key {
			case "max_tokens":
				return modelNumber(params, "max_tokens", raw)
			case "stream":
				return modelBool(params, "stream", raw)
			case "thinking":
				return thinkingOn(params, raw)
			}
		case openaiCall, openaiModel:
			switch key {
			case "model":
				return modelString(params, "model", raw)
			}
			if kind == openaiModel {
				return nil
			}
			switch key {
			case "stream":
				return modelBool(params, "stream", raw)
			case "tools":
				return countElements(params, "tools", raw)
			case "max_output_tokens", "max_tokens", "max_completion_tokens":
				return modelNumber(params, "max_tokens", raw)
			}
		case googleCall:
			switch key {
			case "tools":
				return countElements(params, "tools", raw)
			case "generationConfig":
				return jsonbody.Members(raw, func(name, raw []byte) error {
					if string(name) == "maxOutputTokens" {
						return modelNumber(params, "max_tokens", raw)
					}
					return nil
				})
			}
		}
		return nil
	})
}

func modelString(params map[string]any, key string, raw []byte) error {
	v, err := jsonbody.Decode(raw)
	if err != nil {
		return err
	}
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("%s is not a string", key)
	}
	if len(s) > maxModelName {
		return fmt.Errorf("%s is longer than %d bytes", key, maxModelName)
	}
	params[key] = s
	return nil
}

func modelNumber(params map[string]any, key string, raw []byte) error {
	v, err := jsonbody.Decode(raw)
	if err != nil {
		return err
	}
	switch v.(type) {
	case int64, float64, int, uint64:
	case nil:
		return nil
	default:
		return fmt.Errorf("%s is not a number", key)
	}
	params[key] = v
	return nil
}

func modelBool(params map[string]any, key string, raw []byte) error {
	v, err := jsonbody.Decode(raw)
	if err != nil {
		return err
	}
	switch b := v.(type) {
	case bool:
		params[key] = b
	case nil:
	default:
		return fmt.Errorf("%s is not a boolean", key)
	}
	return nil
}

// countElements records the length of a JSON array (tools); it counts
// without decoding the elements, which can be large.
func countElements(params map[string]any, key string, raw []byte) error {
	if string(raw) == "null" {
		return nil
	}
	n := 0
	if err := jsonbody.Elements(raw, func([]byte) error { n++; return nil }); err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	params[key] = n
	return nil
}

// thinkingOn records whether extended thinking is on: a thinking object
// whose type is not "disabled".
func thinkingOn(params map[string]any, raw []byte) error {
	if string(raw) == "null" {
		params["thinking"] = false
		return nil
	}
	typ := ""
	err := jsonbody.Members(raw, func(name, raw []byte) error {
		if string(name) != "type" {
			return nil
		}
		v, err := jsonbody.Decode(raw)
		if err != nil {
			return err
		}
		s, ok := v.(string)
		if !ok {
			return errors.New("thinking.type is not a string")
		}
		typ = s
		return nil
	})
	if err != nil {
		return fmt.Errorf("thinking: %w", err)
	}
	params["thinking"] = typ != "" && typ != "disabled"
	return nil
}

// modelCalls are the actions whose responses report token usage.
var modelCalls = map[string]bool{
	"anthropic.messages.create":             true,
	"openai.responses.create":               true,
	"openai.chat.create":                    true,
	"openai.completions.create":             true,
	"openai.embeddings.create":              true,
	"google.models.generate_content":        true,
	"google.models.stream_generate_content": true,
}

// IsModelCall reports whether actions of type t are model calls whose
// responses report token usage.
func IsModelCall(t string) bool { return modelCalls[t] }

var _ Cataloguer = (*modelAPI)(nil)

// bodyParams are the params each body reader sets.
var bodyParams = map[modelBody][]string{
	anthropicCall:  {"model", "max_tokens", "stream", "tools", "thinking", "body_truncated"},
	anthropicCount: {"model", "tools", "body_truncated"},
	openaiCall:     {"model", "stream", "tools", "max_tokens", "body_truncated"},
	openaiModel:    {"model", "body_truncated"},
	googleCall:     {"tools", "max_tokens", "body_truncated"},
}

// Catalog lists the model API's action types, from its route table.
func (c *modelAPI) Catalog() []ActionInfo {
	var out []ActionInfo
	for _, rt := range c.routeTable() {
		var params []string
		for _, seg := range strings.Split(rt.path, "/") {
			if name, ok := strings.CutPrefix(seg, "{"); ok {
				name = strings.TrimSuffix(strings.TrimSuffix(name, "}"), "...")
				if name != "version" {
					params = append(params, name)
				}
			}
		}
		params = append(params, bodyParams[rt.body]...)
		if rt.action != "" {
			out = append(out, ActionInfo{Type: rt.action, Connector: c.name, Params: params, Via: []string{rt.method + " " + rt.path}})
			continue
		}
		for method, action := range googleMethods {
			out = append(out, ActionInfo{Type: action, Connector: c.name, Params: append(params, "stream"), Via: []string{rt.method + " " + rt.path + ":" + method}})
		}
	}
	return append(out, ActionInfo{Type: c.name + ".api.<method>", Pattern: true, Connector: c.name, Params: []string{"path"}, Via: []string{"any other request to its hosts"}})
}

func (c *modelAPI) routeTable() []modelRoute {
	switch c.name {
	case "anthropic":
		return anthropicRoutes
	case "openai":
		return openaiRoutes
	}
	return googleRoutes
}
