// Package rules holds the action model, policy files, their compilation and
// the decisions made from them.
package rules

import "time"

// An Action is one thing an agent tried to do, in connector terms: a push, a
// merge, a publish, an MCP tool call. Connectors build actions from requests;
// rules decide them. Once classified, an action's maps are read-only:
// connectors share Resource and Request.Headers maps among actions that
// carry the same values (the repository an agent works on, the headers of
// its client), so code that needs a changed map builds a new one.
type Action struct {
	ID        string            `json:"id,omitempty" jsonschema:"description=Unique sortable identifier of the request that carried the action."`
	Time      time.Time         `json:"time,omitzero" jsonschema:"description=When the action was seen (RFC 3339)."`
	Gateway   string            `json:"gateway,omitempty" jsonschema:"description=The governed session (tf run --name)."`
	Connector string            `json:"connector,omitempty" jsonschema:"description=The connector that classified the request: github, npm, mcp, http or a declared one."`
	Type      string            `json:"type" jsonschema:"description=connector.resource.verb, for example github.pr.merge."`
	Resource  map[string]string `json:"resource,omitempty" jsonschema:"description=What the action is about: owner, repo, server, tool, package, host."`
	Params    map[string]any    `json:"params,omitempty" jsonschema:"description=Details of the action: branch, number, base, tool arguments."`
	Request   Request           `json:"request,omitzero" jsonschema:"description=The HTTP request that carried the action (never its secrets)."`
	// Agent is the agent that authenticated to a shared gateway (tf
	// serve) with its token; empty under tf run, whose one session is
	// named by Gateway.
	Agent string `json:"agent,omitempty" jsonschema:"description=The agent that sent the request through a shared gateway (tf agents add NAME); empty under tf run."`
}

// Request is the part of an HTTP request that rules may look at. Headers
// holds selected headers only; credentials are never copied into it.
type Request struct {
	Method  string            `json:"method,omitempty"`
	Scheme  string            `json:"scheme,omitempty"`
	Host    string            `json:"host,omitempty"`
	Port    int               `json:"port,omitempty"`
	Path    string            `json:"path,omitempty"`
	Query   string            `json:"query,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
}
