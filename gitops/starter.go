package gitops

// The files tf init writes into a new policy repository. The policy is a
// safe start for a coding agent: read, propose through pull requests, and
// leave merging, protected branches, branch deletion and publishing to
// people; the agents' own model APIs are allowed and their telemetry
// refused. Everything else is denied until a rule says otherwise.
var starterFiles = starterFor(agentPresets[GenericAgent])

// starterPolicy is the policy of tf init without --agent.
var starterPolicy = starterFiles[0].body

type starterFile struct{ name, body string }

func starterFor(p agentPreset) []starterFile {
	return []starterFile{
		{"tameflare.yaml", starterCommon + p.rules},
		{"tests/starter.yaml", starterTestsCommon + p.tests},
		{"README.md", starterReadme},
	}
}

// GenericAgent is the preset of tf init without --agent: the model APIs
// of all three agents tf knows.
const GenericAgent = "generic"

// Agents lists the presets of tf init --agent.
func Agents() []string { return []string{"claude-code", "codex", "gemini", GenericAgent} }

// agentPreset is the part of the starter that is the agent's own: the
// rules for its model API and service endpoints, and their tests.
type agentPreset struct{ rules, tests string }

// The presets decide each endpoint of the agent's own: the model API is
// allowed (every session needs it); endpoints the agent reads its
// settings, limits and login from are allowed; what it sends about itself
// (usage telemetry, metrics, feedback transcripts) is refused, since the
// agent works on without it (measured with Claude Code: see
// cmd/tf/claude_e2e_test.go) and tf keeps its own record. Another agent's
// model API falls to the default.
var agentPresets = map[string]agentPreset{
	"claude-code": {claudeRules, claudeTests + otherModelTest("openai.responses.create", "openai")},
	"codex":       {codexRules, codexTests + otherModelTest("anthropic.messages.create", "anthropic")},
	"gemini":      {geminiRules, geminiTests + otherModelTest("anthropic.messages.create", "anthropic")},
	GenericAgent:  {genericRules, claudeTests + codexTests + geminiTests},
}

func otherModelTest(typ, conn string) string {
	return "  - name: another agent's model API falls to the default\n    action: {type: " + typ + ", connector: " + conn + ", params: {model: m}}\n    expect: deny\n"
}

const claudeRules = `  # Claude Code: its model (api.anthropic.com) and its own endpoints.
  - name: agent-model-calls
    actions: [anthropic.messages.create, anthropic.messages.count_tokens, anthropic.models.*]
    decision: allow
    reason: The agent's own model is the one endpoint every session needs.

  - name: agent-service-endpoints
    actions:
      - anthropic.claude_code.get
      - anthropic.feature_flags.evaluate
      - anthropic.mcp_directory.get
      - anthropic.connectivity.check
      - anthropic.oauth.token
      - anthropic.oauth.profile
      - anthropic.oauth.roles
    decision: allow
    reason: The agent reads its settings, limits, feature flags and the MCP directory, and refreshes its own login; nothing of the work leaves through them.

  - name: no-agent-telemetry
    actions: [anthropic.telemetry.send, anthropic.claude_code.post, anthropic.feedback.send]
    decision: deny
    reason: Usage telemetry, metrics and feedback transcripts stay on the machine; tf keeps its own record. The agent works on without them.
`

const codexRules = `  # Codex CLI: its model, the Responses API (api.openai.com with an API
  # key, chatgpt.com/backend-api/codex with a ChatGPT login; chat
  # completions for providers configured with wire_api = "chat").
  - name: agent-model-calls
    actions: [openai.responses.create, openai.responses.get, openai.chat.create, openai.models.*]
    decision: allow
    reason: The agent's own model is the one endpoint every session needs.

  - name: agent-service-endpoints
    actions: [openai.oauth.token]
    decision: allow
    reason: The agent refreshes its own ChatGPT login; nothing of the work leaves through it.

  - name: no-agent-telemetry
    actions: [openai.telemetry.send]
    decision: deny
    reason: Usage telemetry and metrics stay on the machine; tf keeps its own record. The agent works on without them.
`

const geminiRules = `  # Gemini CLI: its model, the Gemini API
  # (generativelanguage.googleapis.com). Its usage statistics go to
  # play.googleapis.com, which is refused by name.
  - name: agent-model-calls
    actions:
      - google.models.generate_content
      - google.models.stream_generate_content
      - google.models.count_tokens
      - google.models.list
      - google.models.get
    decision: allow
    reason: The agent's own model is the one endpoint every session needs.

  - name: no-agent-telemetry
    actions: [http.post]
    when: resource.host == "play.googleapis.com"
    decision: deny
    reason: Usage statistics stay on the machine; tf keeps its own record. The agent works on without them.
`

const genericRules = `  # The coding agents' own model APIs: Claude Code (anthropic), Codex CLI
  # (openai), Gemini CLI (google).
  - name: agent-model-calls
    actions:
      - anthropic.messages.create
      - anthropic.messages.count_tokens
      - anthropic.models.*
      - openai.responses.create
      - openai.responses.get
      - openai.chat.create
      - openai.models.*
      - google.models.generate_content
      - google.models.stream_generate_content
      - google.models.count_tokens
      - google.models.list
      - google.models.get
    decision: allow
    reason: The agent's own model is the one endpoint every session needs.

  - name: agent-service-endpoints
    actions:
      - anthropic.claude_code.get
      - anthropic.feature_flags.evaluate
      - anthropic.mcp_directory.get
      - anthropic.connectivity.check
      - anthropic.oauth.token
      - anthropic.oauth.profile
      - anthropic.oauth.roles
      - openai.oauth.token
    decision: allow
    reason: The agent reads its settings, limits, feature flags and the MCP directory, and refreshes its own login; nothing of the work leaves through them.

  - name: no-agent-telemetry
    actions: [anthropic.telemetry.send, anthropic.claude_code.post, anthropic.feedback.send, openai.telemetry.send]
    decision: deny
    reason: Usage telemetry, metrics and feedback transcripts stay on the machine; tf keeps its own record. The agent works on without them.

  - name: no-gemini-usage-statistics
    actions: [http.post]
    when: resource.host == "play.googleapis.com"
    decision: deny
    reason: Usage statistics stay on the machine; tf keeps its own record. The agent works on without them.
`

const claudeTests = `  - name: Claude Code's model call is allowed
    action: {type: anthropic.messages.create, connector: anthropic, params: {model: claude-sonnet-4-5, stream: true}}
    expect: allow
    rule: agent-model-calls
  - name: Claude Code reads its settings
    action: {type: anthropic.claude_code.get, connector: anthropic, params: {endpoint: settings}}
    expect: allow
    rule: agent-service-endpoints
  - name: Claude Code's telemetry is refused
    action: {type: anthropic.telemetry.send, connector: anthropic, params: {endpoint: v2/batch}}
    expect: deny
    rule: no-agent-telemetry
  - name: Claude Code's OAuth login cannot mint an API key
    action: {type: anthropic.oauth.create_api_key, connector: anthropic}
    expect: deny
`

const codexTests = `  - name: Codex's model call is allowed
    action: {type: openai.responses.create, connector: openai, params: {model: gpt-5-codex, stream: true}}
    expect: allow
    rule: agent-model-calls
  - name: Codex refreshes its ChatGPT login
    action: {type: openai.oauth.token, connector: openai}
    expect: allow
    rule: agent-service-endpoints
  - name: Codex's metrics export is refused
    action: {type: openai.telemetry.send, connector: openai, params: {signal: metrics}}
    expect: deny
    rule: no-agent-telemetry
  - name: other ChatGPT endpoints fall to the default
    action: {type: openai.api.get, connector: openai, params: {path: /backend-api/wham/tasks/list}}
    expect: deny
`

const geminiTests = `  - name: Gemini CLI's model call is allowed
    action: {type: google.models.stream_generate_content, connector: google, params: {model: gemini-2.5-pro}}
    expect: allow
    rule: agent-model-calls
  - name: Gemini CLI's usage statistics are refused
    action: {type: http.post, connector: http, resource: {host: play.googleapis.com}}
    expect: deny
`

const starterCommon = `# yaml-language-server: $schema=https://tameflare.dev/schema/tameflare.schema.json
#
# Written by tf init: safe defaults for a coding agent. Change it through a
# pull request, check it with tf policy plan, and put it in force with
# tf policy apply.
version: 1
mode: enforce
default: deny

rules:
  - name: reads
    actions: [github.*.get, github.*.list, github.repo.pull, github.graphql.query, npm.package.get]
    decision: allow
    reason: Reading code, issues, pull requests and packages is safe.

  - name: open-pull-requests
    actions: [github.pr.create]
    decision: allow
    reason: Agents propose changes through pull requests.

  - name: merges-need-a-human
    actions: [github.pr.merge]
    decision: require_approval
    reason: A person merges pull requests.
    approval: { timeout: 15m }

  - name: protect-branches
    actions: [github.repo.push]
    when: params.branch matches "^(main|master|develop|staging|production|release/.*)$"
    decision: deny
    reason: Protected branches change through pull requests.

  - name: push-other-branches
    actions: [github.repo.push]
    when: params.branch != nil && params.branch != ""
    decision: allow
    reason: Agents push their own working branches.

  - name: push-needs-a-known-branch
    actions: [github.repo.push]
    when: params.branch == nil || params.branch == ""
    decision: deny
    reason: A push whose branch tf could not learn may be a push to a protected one.

  - name: no-branch-deletion
    actions: [github.branch.delete]
    decision: deny
    reason: Branches are deleted by people, not agents.

  - name: no-npm-publish
    actions: [npm.package.publish]
    decision: deny
    reason: Packages are published by people, not agents.

  # MCP servers listed under mcp_servers, or wrapped or registered by
  # tf mcp wrap-config, connect (tf's baseline allows the protocol's plumbing); their tool calls
  # are held for a person until rules name the tools. Servers not listed
  # fall to the default.
  - name: mcp-tools-need-a-person
    actions: ["mcp.*"]
    when: resource.method == "tools/call"
    decision: require_approval
    reason: A person allows each MCP tool call until the policy has rules for the server's tools.
    approval: { timeout: 5m }

`

const starterTestsCommon = `# Tests of tameflare.yaml: tf policy test runs them, and tf policy plan and
# tf policy apply refuse a policy whose tests fail.
cases:
  - name: reading a repository is allowed
    action: {type: github.repo.get, connector: github, resource: {owner: acme, repo: app}}
    expect: allow
    rule: reads
  - name: cloning is allowed
    action: {type: github.repo.pull, resource: {owner: acme, repo: app}}
    expect: allow
    rule: reads
  - name: fetching a package is allowed
    action: {type: npm.package.get, connector: npm, resource: {package: left-pad}}
    expect: allow
    rule: reads
  - name: opening a pull request is allowed
    action: {type: github.pr.create, resource: {owner: acme, repo: app}, params: {base: main, head: feature/login}}
    expect: allow
    rule: open-pull-requests
  - name: merging needs a person
    action: {type: github.pr.merge, resource: {owner: acme, repo: app}, params: {number: 42}}
    expect: require_approval
    rule: merges-need-a-human
  - name: a push to main is refused
    action: {type: github.repo.push, resource: {owner: acme, repo: app}, params: {branch: main}}
    expect: deny
    rule: protect-branches
  - name: a push to a release branch is refused
    action: {type: github.repo.push, resource: {owner: acme, repo: app}, params: {branch: release/2.0}}
    expect: deny
    rule: protect-branches
  - name: a push to a working branch is allowed
    action: {type: github.repo.push, resource: {owner: acme, repo: app}, params: {branch: feature/login}}
    expect: allow
    rule: push-other-branches
  - name: a push whose branch is unknown is refused, not taken for another branch
    action: {type: github.repo.push, resource: {owner: acme, repo: app}, params: {ref_id: REF_kwDOExample}}
    expect: deny
    rule: push-needs-a-known-branch
  - name: deleting a branch is refused
    action: {type: github.branch.delete, resource: {owner: acme, repo: app}, params: {branch: feature/old}}
    expect: deny
    rule: no-branch-deletion
  - name: publishing to npm is refused
    action: {type: npm.package.publish, connector: npm, resource: {package: left-pad}}
    expect: deny
    rule: no-npm-publish
  - name: an MCP tool call is held for a person
    action: {type: mcp.docs.search, connector: mcp, resource: {server: docs, tool: search, method: tools/call}, params: {query: tf}}
    expect: require_approval
    rule: mcp-tools-need-a-person
  - name: anything else falls to the default
    action: {type: http.post, connector: http, resource: {host: example.com}}
    expect: deny
`

const starterReadme = `# Agent policy

This repository holds the policy that tf enforces for AI coding agents:
` + "`tameflare.yaml`" + ` (rules), ` + "`policies/*.yaml`" + ` (more rules, optional) and
` + "`tests/*.yaml`" + ` (what the rules must decide).

Only the pinned commit is in force; edits take effect when they are applied:

` + "```sh" + `
tf policy test .          # run the tests
tf policy plan            # replay recorded traffic through the change
tf policy apply           # move the pin to the branch tip
tf policy show            # what is in force
tf policy rollback        # back to the previous applied commit
` + "```" + `
`
