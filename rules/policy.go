package rules

import (
	"time"

	"github.com/tameflare/tf/keyring/injection"

	"github.com/expr-lang/expr/vm"
)

// Mode says whether refusals are enforced or only recorded.
type Mode string

const (
	Enforce Mode = "enforce"
	Monitor Mode = "monitor"
)

// Limits that keep a hostile or runaway policy within bounded memory and
// load time.
const (
	MaxFileBytes  = 4 << 20 // one policy or test file
	MaxRules      = 5000    // rules across all files of a policy
	MaxExprBytes  = 16 << 10
	maxExprNodes  = 5000
	maxGlobLength = 256
)

// File is the document form of tameflare.yaml: what a user writes.
type File struct {
	Version     int      `yaml:"version" json:"version" jsonschema:"required,enum=1" jsonschema_description:"Policy format version. Only 1 exists."`
	Mode        Mode     `yaml:"mode,omitempty" json:"mode,omitempty" jsonschema:"default=enforce" jsonschema_description:"enforce refuses what the rules refuse; monitor forwards everything and records what would have been refused."`
	Default     Effect   `yaml:"default,omitempty" json:"default,omitempty" jsonschema:"default=deny" jsonschema_description:"The decision for an action that no rule matches."`
	Rules       []Rule   `yaml:"rules,omitempty" json:"rules,omitempty" jsonschema_description:"Rules, in order. Among the rules that match an action, deny beats require_approval beats allow."`
	Passthrough []string `yaml:"passthrough,omitempty" json:"passthrough,omitempty" jsonschema_description:"Hosts tunnelled without TLS interception (for certificate-pinned clients), decided as net.connect on host and port alone. * matches any run of characters."`
	// PrivateHosts may resolve to loopback, private, link-local or CGNAT
	// addresses; the proxy refuses such addresses for every other host.
	PrivateHosts []string `yaml:"private_hosts,omitempty" json:"private_hosts,omitempty" jsonschema_description:"Hosts that may resolve to loopback, private, link-local or CGNAT addresses. Every other host that does is refused (SSRF and cloud metadata protection)."`
	// Credentials name the secrets the gateway injects, per connector.
	Credentials *injection.Credentials `yaml:"credentials,omitempty" json:"credentials,omitempty" jsonschema_description:"Secrets the gateway injects into allowed requests, by connector; the agent never holds them. Values are names of secrets in the keyring (tf creds set NAME), never the secrets."`
	// MCPServers name MCP servers reached over HTTP, so that their actions
	// read mcp.<name>.<tool> rather than mcp.<host>.<tool>.
	MCPServers []MCPServer `yaml:"mcp_servers,omitempty" json:"mcp_servers,omitempty" jsonschema_description:"MCP servers reached over Streamable HTTP, by name: requests to a listed URL are MCP actions named mcp.<name>.<tool>. MCP requests to other URLs are still recognised by their JSON-RPC shape and named after their host."`
	// MCP holds settings of MCP governance.
	MCP *MCPSettings `yaml:"mcp,omitempty" json:"mcp,omitempty" jsonschema_description:"Settings of MCP governance."`
}

// MCPServer names an MCP server reached over HTTP.
type MCPServer struct {
	Name string `yaml:"name" json:"name" jsonschema:"required,pattern=^[a-z0-9][a-z0-9_-]*$" jsonschema_description:"The server's name in action types (mcp.<name>.<tool>) and in credentials.mcp: lower-case letters, digits, - and _."`
	URL  string `yaml:"url" json:"url" jsonschema:"required,minLength=1" jsonschema_description:"The server's endpoint, e.g. https://mcp.example.com/mcp. Requests to this path, or below it, belong to the server; a URL without a path claims the whole host."`
}

// MCPSettings configure MCP governance.
type MCPSettings struct {
	FilterTools *bool  `yaml:"filter_tools,omitempty" json:"filter_tools,omitempty" jsonschema:"default=true" jsonschema_description:"Remove from tools/list answers the tools that every call of which the policy denies. Default true."`
	PinTools    string `yaml:"pin_tools,omitempty" json:"pin_tools,omitempty" jsonschema:"enum=deny,enum=require_approval,enum=monitor" jsonschema_description:"Pin each tool of a listed server (a digest of its name, description and input schema) the first time it is listed, and treat a later change (a rug pull): deny hides the tool and refuses its calls, require_approval holds its calls for a person, monitor records the change only. Accept a change with tf mcp tools accept. Unset: no pinning."`
}

// Fragment is the document form of policies/*.yaml: more rules for the same
// policy.
type Fragment struct {
	Version     int      `yaml:"version,omitempty" json:"version,omitempty" jsonschema:"enum=1" jsonschema_description:"Policy format version. Only 1 exists."`
	Rules       []Rule   `yaml:"rules,omitempty" json:"rules,omitempty" jsonschema_description:"Rules merged after those of tameflare.yaml, files in name order."`
	Passthrough []string `yaml:"passthrough,omitempty" json:"passthrough,omitempty" jsonschema_description:"More passthrough hosts."`
}

// Rule is one rule as written.
type Rule struct {
	Name     string    `yaml:"name" json:"name" jsonschema:"required,minLength=1" jsonschema_description:"Unique name of the rule; decisions and audit records name it."`
	Actions  []string  `yaml:"actions" json:"actions" jsonschema:"required,minItems=1" jsonschema_description:"Globs over the action type (connector.resource.verb); * matches any run of characters. Example: github.*.get"`
	When     string    `yaml:"when,omitempty" json:"when,omitempty" jsonschema_description:"Optional expr-lang condition over action, resource, params, request and now. Example: params.branch matches \"^(main|production)$\""`
	Decision Effect    `yaml:"decision" json:"decision" jsonschema:"required" jsonschema_description:"What the rule decides when it matches."`
	Reason   string    `yaml:"reason,omitempty" json:"reason,omitempty" jsonschema_description:"Shown to the agent and recorded with the decision."`
	Mode     Mode      `yaml:"mode,omitempty" json:"mode,omitempty" jsonschema_description:"monitor records what the rule would decide without enforcing it (shadow mode for a staged rollout)."`
	Approval *Approval `yaml:"approval,omitempty" json:"approval,omitempty" jsonschema_description:"Settings for require_approval."`
	Limit    *Limit    `yaml:"limit,omitempty" json:"limit,omitempty" jsonschema_description:"At most count actions, or tokens of model calls, per window (a duration such as 1h, or session). Past it the rule refuses, saying the limit and when it resets. Counted: the actions the rule matched that were let through."`
}

// Approval configures how long a held action waits for a person.
type Approval struct {
	Timeout string `yaml:"timeout,omitempty" json:"timeout,omitempty" jsonschema:"pattern=^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$" jsonschema_description:"How long to wait for a person, e.g. 15m. Default 5m. Expiry denies."`
}

// Policy is a loaded, compiled policy, ready to decide. It is immutable and
// safe for concurrent use.
type Policy struct {
	Mode         Mode
	Default      Effect
	Rules        []*CompiledRule
	Passthrough  []string
	PrivateHosts []string
	Credentials  *injection.Credentials
	// MCPServers are the named MCP servers, URLs validated.
	MCPServers []MCPServer
	// MCPFilterTools removes always-denied tools from tools/list answers
	// (mcp: {filter_tools: ...}, default true).
	MCPFilterTools bool
	// MCPPinTools is what a changed pinned tool gets (mcp: {pin_tools:
	// ...}): deny, require_approval or monitor; empty pins nothing.
	MCPPinTools string
	// Revision identifies the policy: a content hash when loaded from
	// files, the commit when loaded from a repository.
	Revision string
	// Source says where the policy came from, for messages.
	Source string

	index      *index
	paramsRead ParamsRead
	// limits are the rules with a limit, in policy order.
	limits []*CompiledRule
}

// CompiledRule is a rule ready to evaluate.
type CompiledRule struct {
	Rule
	// File, Line and Col locate the rule's name in its file.
	File      string
	Line, Col int
	Timeout   time.Duration
	// Quota is the rule's limit, compiled; nil when it has none.
	Quota   *Quota
	globs   []glob
	program *vm.Program
	native  native // nil unless the condition has a native form
	pos     int    // index in Policy.Rules
	// reason is the decision's reason when the rule decides as written,
	// made once rather than per decision.
	reason string
}

// reasonFor returns the reason of a decision made by m, a match of r.
func (r *CompiledRule) reasonFor(m *Match) string {
	if m.Error == "" && m.Decision == r.Decision && r.reason != "" {
		return r.reason
	}
	return ruleReason(m)
}

// Monitor reports whether the rule only records.
func (r *CompiledRule) Monitor() bool { return r.Mode == Monitor }
