package connectors

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/tameflare/tf/jsonbody"
	"github.com/tameflare/tf/rules"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"
)

// gqlMaxTokens bounds the lexer on hostile documents.
const gqlMaxTokens = 15000

// gqlMaxDepth bounds fragment expansion at the root of a mutation.
const gqlMaxDepth = 10

// A gqlMutation maps a GraphQL mutation field to the action of its REST
// twin; rename maps input fields to param names (the rest are snake_cased).
type gqlMutation struct {
	action string
	rename map[string]string
	// closeOn sets the action to close when input.state is CLOSED.
	closeOn string
	set     map[string]any
	lower   []string // params whose enum values are lower-cased, as REST spells them
}

var prRename = map[string]string{"baseRefName": "base", "headRefName": "head", "pullRequestId": "pull_request_id"}

// githubMutations covers what gh sends, and the other mutations with a
// REST twin.
var githubMutations = map[string]gqlMutation{
	"createPullRequest":             {action: "github.pr.create", rename: prRename},
	"updatePullRequest":             {action: "github.pr.update", rename: prRename, closeOn: "github.pr.close"},
	"updatePullRequestBranch":       {action: "github.pr.update_branch", rename: prRename},
	"mergePullRequest":              {action: "github.pr.merge", rename: prRename, lower: []string{"merge_method"}},
	"enablePullRequestAutoMerge":    {action: "github.pr.merge", rename: prRename, set: map[string]any{"auto": true}, lower: []string{"merge_method"}},
	"disablePullRequestAutoMerge":   {action: "github.pr.disable_auto_merge", rename: prRename},
	"closePullRequest":              {action: "github.pr.close", rename: prRename},
	"reopenPullRequest":             {action: "github.pr.reopen", rename: prRename},
	"markPullRequestReadyForReview": {action: "github.pr.ready", rename: prRename},
	"convertPullRequestToDraft":     {action: "github.pr.draft", rename: prRename},
	"addPullRequestReview":          {action: "github.pr.review", rename: prRename, lower: []string{"event"}},
	"submitPullRequestReview":       {action: "github.pr.review", rename: prRename, lower: []string{"event"}},
	"dismissPullRequestReview":      {action: "github.pr.dismiss_review", rename: prRename},
	"requestReviews":                {action: "github.pr.request_reviewers", rename: prRename},
	"revertPullRequest":             {action: "github.pr.revert", rename: prRename},
	"addComment":                    {action: "github.issue.comment"},
	"updateIssueComment":            {action: "github.issue_comment.update"},
	"deleteIssueComment":            {action: "github.issue_comment.delete"},
	"createIssue":                   {action: "github.issue.create"},
	"updateIssue":                   {action: "github.issue.update", closeOn: "github.issue.close"},
	"closeIssue":                    {action: "github.issue.close"},
	"reopenIssue":                   {action: "github.issue.reopen"},
	"deleteIssue":                   {action: "github.issue.delete"},
	"transferIssue":                 {action: "github.issue.transfer"},
	"pinIssue":                      {action: "github.issue.pin"},
	"unpinIssue":                    {action: "github.issue.unpin"},
	"addLabelsToLabelable":          {action: "github.issue.label"},
	"removeLabelsFromLabelable":     {action: "github.issue.unlabel"},
	"addAssigneesToAssignable":      {action: "github.issue.assign"},
	"removeAssigneesFromAssignable": {action: "github.issue.unassign"},
	"createRef":                     {action: "github.ref.create"},
	"updateRef":                     {action: "github.ref.update"},
	"updateRefs":                    {action: "github.ref.update"},
	"deleteRef":                     {action: "github.branch.delete"},
	"mergeBranch":                   {action: "github.branch.merge"},
	"createCommitOnBranch":          {action: "github.repo.push"},
	"createRepository":              {action: "github.repo.create"},
	"cloneTemplateRepository":       {action: "github.repo.create"},
	"updateRepository":              {action: "github.repo.update"},
	"archiveRepository":             {action: "github.repo.archive"},
	"unarchiveRepository":           {action: "github.repo.unarchive"},
	"deleteRepository":              {action: "github.repo.delete"},
	"createBranchProtectionRule":    {action: "github.branch_protection.update"},
	"updateBranchProtectionRule":    {action: "github.branch_protection.update"},
	"deleteBranchProtectionRule":    {action: "github.branch_protection.delete"},
	"addStar":                       {action: "github.star.add"},
	"removeStar":                    {action: "github.star.remove"},
}

// skippedInputs are input fields left out of params: free text that can be
// large and that rules have no business matching.
var skippedInputs = map[string]bool{"body": true, "clientMutationId": true, "fileChanges": true, "message": true}

type gqlBody struct {
	Query         string
	Variables     map[string]any
	OperationName string
}

// gqlNames are the members of a GraphQL request, as GitHub reads them:
// exactly these names.
var gqlNames = [...]string{"query", "variables", "operationName"}

// classifyGraphQL turns a GraphQL request into actions: one per mutation
// field, or one github.graphql.query for a query. A POST carries the
// request in its JSON body, a GET in its query string; both are read
// strictly, since GitHub executes what it reads, not what tf guessed.
func (g *GitHub) classifyGraphQL(r *Request) ([]rules.Action, error) {
	var body gqlBody
	q, err := url.ParseQuery(r.HTTP.URL.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("graphql: malformed query string: %w", err)
	}
	inURL, err := gqlFromQuery(q, &body)
	if err != nil {
		return nil, err
	}
	switch r.HTTP.Method {
	case "POST":
		if inURL {
			return nil, errors.New("graphql: ambiguous request: a POST with a query in its URL as well as its body")
		}
		if r.Truncated {
			return nil, fmt.Errorf("graphql: %w", errTruncatedBody)
		}
		if err := gqlFromBody(r.Body, &body); err != nil {
			return nil, fmt.Errorf("graphql: %w", err)
		}
	case "GET", "HEAD":
		if !inURL {
			return nil, errNoGraphQL
		}
		if len(r.Body) > 0 || r.Truncated {
			return nil, errors.New("graphql: ambiguous request: a GET with a body")
		}
	default:
		return nil, errNoGraphQL
	}
	acts, err := classifyGraphQLBody(&body)
	if err != nil {
		return nil, err
	}
	for i := range acts {
		if err := g.resolveRef(r, &acts[i]); err != nil {
			return nil, err
		}
	}
	return acts, nil
}

// resolveRef gives a mutation that names its ref by node id (ref_id) the
// branch or tag and repository its REST twin carries, through one lookup.
// What cannot be resolved is refused: a rule written for "other branches"
// must never see a push to main without its branch.
func (g *GitHub) resolveRef(r *Request, a *rules.Action) error {
	id, ok := a.Params["ref_id"].(string)
	if !ok {
		if _, has := a.Params["ref_id"]; has {
			return fmt.Errorf("graphql: %s: ref id is not a string", a.Type)
		}
		return nil
	}
	if _, named := a.Params["branch"]; named {
		return nil
	}
	ctx, cancel := requestContext(r)
	defer cancel()
	n, err := g.refs.get(ctx, requestHost(r), id)
	if err != nil {
		return fmt.Errorf("graphql: %s names its ref by node id and tf could not resolve it, so it is refused: %w", a.Type, err)
	}
	owner, repo := repoName(n.Owner, n.Repo)
	a.Resource = map[string]string{"owner": owner, "repo": repo}
	a.Params["ref"] = n.Ref
	if b, ok := strings.CutPrefix(n.Ref, "refs/heads/"); ok {
		a.Params["branch"] = b
	} else if t, ok := strings.CutPrefix(n.Ref, "refs/tags/"); ok {
		a.Params["tag"] = t
		if a.Type == "github.branch.delete" {
			a.Type = "github.tag.delete"
		}
	}
	return nil
}

// errNoGraphQL says that a request to the GraphQL endpoint carries no
// GraphQL request (a bare GET): it is classified as a plain API request.
var errNoGraphQL = errors.New("graphql: no request")

// gqlFromBody reads a GraphQL POST body.
func gqlFromBody(data []byte, body *gqlBody) error {
	return jsonbody.Members(data, func(name, raw []byte) error {
		switch string(name) {
		case "query", "operationName":
			v, err := jsonbody.Decode(raw)
			if err != nil {
				return err
			}
			s, ok := v.(string)
			if v != nil && !ok {
				return fmt.Errorf("%s is not a string", name)
			}
			if string(name) == "query" {
				body.Query = s
			} else {
				body.OperationName = s
			}
		case "variables":
			v, err := jsonbody.Decode(raw)
			if err != nil {
				return err
			}
			m, ok := v.(map[string]any)
			if v != nil && !ok {
				return errors.New("variables is not an object")
			}
			body.Variables = m
		}
		return nil
	})
}

// gqlFromQuery reads a GraphQL request from a URL query; ok reports that
// there is one. A name given twice, or in another case, is ambiguous.
func gqlFromQuery(q url.Values, body *gqlBody) (ok bool, err error) {
	if len(q) == 0 {
		return false, nil
	}
	for k, vs := range q {
		for _, n := range gqlNames {
			if !strings.EqualFold(k, n) {
				continue
			}
			if k != n {
				return false, fmt.Errorf("graphql: ambiguous request: query parameter %q is not %q", k, n)
			}
			if len(vs) != 1 {
				return false, fmt.Errorf("graphql: ambiguous request: query parameter %q given %d times", k, len(vs))
			}
			ok = true
		}
	}
	if !ok {
		return false, nil
	}
	body.Query = q.Get("query")
	body.OperationName = q.Get("operationName")
	if v := q.Get("variables"); v != "" {
		x, err := jsonbody.Decode([]byte(v))
		if err != nil {
			return false, fmt.Errorf("graphql: variables: %w", err)
		}
		m, isMap := x.(map[string]any)
		if x != nil && !isMap {
			return false, errors.New("graphql: variables is not an object")
		}
		body.Variables = m
	}
	return true, nil
}

func classifyGraphQLBody(body *gqlBody) ([]rules.Action, error) {
	if strings.TrimSpace(body.Query) == "" {
		return nil, errors.New("graphql: empty query")
	}
	doc, err := parser.ParseQueryWithTokenLimit(&ast.Source{Input: body.Query}, gqlMaxTokens)
	if err != nil {
		return nil, fmt.Errorf("graphql: syntax error: %w", err)
	}
	var op *ast.OperationDefinition
	switch {
	case body.OperationName != "":
		op = doc.Operations.ForName(body.OperationName)
		if op == nil {
			return nil, fmt.Errorf("graphql: no operation named %q in the document", body.OperationName)
		}
	case len(doc.Operations) == 1:
		op = doc.Operations[0]
	case len(doc.Operations) == 0:
		return nil, errors.New("graphql: the document has no operation")
	default:
		return nil, errors.New("graphql: several operations and no operationName")
	}
	if op.Operation != ast.Mutation {
		a := rules.Action{Connector: "github", Type: "github.graphql.query", Params: map[string]any{"operation": string(op.Operation)}}
		if op.Name != "" {
			a.Params["name"] = op.Name
		}
		return []rules.Action{a}, nil
	}
	vars := body.Variables
	defaults := map[string]*ast.Value{}
	for _, vd := range op.VariableDefinitions {
		if vd.DefaultValue != nil {
			defaults[vd.Variable] = vd.DefaultValue
		}
	}
	var fields []*ast.Field
	if err := rootFields(doc, op.SelectionSet, 0, &fields); err != nil {
		return nil, err
	}
	if len(fields) == 0 {
		return nil, errors.New("graphql: mutation without fields")
	}
	acts := make([]rules.Action, 0, len(fields))
	for _, f := range fields {
		a, err := mutationAction(f, vars, defaults)
		if err != nil {
			return nil, err
		}
		if op.Name != "" {
			a.Params["operation"] = op.Name
		}
		acts = append(acts, a)
	}
	return acts, nil
}

// rootFields collects the fields at the root of a selection set, through
// fragment spreads and inline fragments.
func rootFields(doc *ast.QueryDocument, set ast.SelectionSet, depth int, out *[]*ast.Field) error {
	if depth > gqlMaxDepth {
		return errors.New("graphql: fragments nested too deeply")
	}
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			if s.Name != "__typename" {
				*out = append(*out, s)
			}
		case *ast.InlineFragment:
			if err := rootFields(doc, s.SelectionSet, depth+1, out); err != nil {
				return err
			}
		case *ast.FragmentSpread:
			fd := doc.Fragments.ForName(s.Name)
			if fd == nil {
				return fmt.Errorf("graphql: unknown fragment %q", s.Name)
			}
			if err := rootFields(doc, fd.SelectionSet, depth+1, out); err != nil {
				return err
			}
		}
	}
	return nil
}

func mutationAction(f *ast.Field, vars map[string]any, defaults map[string]*ast.Value) (rules.Action, error) {
	m, known := githubMutations[f.Name]
	a := rules.Action{Connector: "github", Type: "github.graphql.mutation", Params: map[string]any{}}
	if !known {
		a.Params["field"] = f.Name
	} else {
		a.Type = m.action
	}
	if f.Alias != "" && f.Alias != f.Name {
		a.Params["alias"] = f.Alias
	}
	args := map[string]any{}
	for _, arg := range f.Arguments {
		v, err := gqlValue(arg.Value, vars, defaults, 0)
		if err != nil {
			return a, fmt.Errorf("graphql: %s(%s): %w", f.Name, arg.Name, err)
		}
		args[arg.Name] = v
	}
	if !known {
		return a, nil
	}
	// Most mutations take one input object; its fields become params.
	input, _ := args["input"].(map[string]any)
	if input == nil {
		input = args
	}
	for k, v := range input {
		if skippedInputs[k] || v == nil {
			continue
		}
		name, ok := m.rename[k]
		if !ok {
			name = snakeCase(k)
		}
		a.Params[name] = v
	}
	for k, v := range m.set {
		a.Params[k] = v
	}
	for _, k := range m.lower {
		if s, ok := a.Params[k].(string); ok {
			a.Params[k] = strings.ToLower(s)
		}
	}
	if m.closeOn != "" {
		if s, _ := input["state"].(string); strings.EqualFold(s, "closed") {
			a.Type = m.closeOn
		}
	}
	refineGraphQLRefs(f.Name, &a, input)
	return a, nil
}

// refineGraphQLRefs gives ref mutations the branch and tag params of their
// REST twins where the input names the ref.
func refineGraphQLRefs(field string, a *rules.Action, input map[string]any) {
	switch field {
	case "createRef":
		name, _ := input["name"].(string)
		a.Params["ref"] = name
		if b, ok := strings.CutPrefix(name, "refs/heads/"); ok {
			a.Type = "github.branch.create"
			a.Params["branch"] = b
		} else if t, ok := strings.CutPrefix(name, "refs/tags/"); ok {
			a.Type = "github.tag.create"
			a.Params["tag"] = t
		}
		delete(a.Params, "name")
	case "createCommitOnBranch":
		br, _ := input["branch"].(map[string]any)
		if br == nil {
			return
		}
		delete(a.Params, "branch")
		if name, ok := br["branchName"].(string); ok {
			a.Params["branch"] = strings.TrimPrefix(name, "refs/heads/")
			a.Params["ref"] = "refs/heads/" + a.Params["branch"].(string)
		}
		if nwo, ok := br["repositoryNameWithOwner"].(string); ok {
			if owner, repo, ok := strings.Cut(nwo, "/"); ok {
				owner, repo = repoName(owner, repo)
				a.Resource = map[string]string{"owner": owner, "repo": repo}
			}
		}
		if id, ok := br["id"].(string); ok {
			a.Params["ref_id"] = id
		}
	case "createRepository":
		if name, ok := input["name"].(string); ok {
			_, name = repoName("", name)
			a.Resource = map[string]string{"repo": name}
		}
	}
}

// gqlValue resolves an argument value, variables included.
func gqlValue(v *ast.Value, vars map[string]any, defaults map[string]*ast.Value, depth int) (any, error) {
	if v == nil {
		return nil, nil
	}
	if depth > maxJSONDepth {
		return nil, errors.New("value nested too deeply")
	}
	switch v.Kind {
	case ast.Variable:
		if x, ok := vars[v.Raw]; ok {
			return normalizeVar(x), nil
		}
		if d := defaults[v.Raw]; d != nil {
			return gqlValue(d, nil, nil, depth+1)
		}
		return nil, nil
	case ast.IntValue:
		n, err := strconv.ParseInt(v.Raw, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad integer %q", v.Raw)
		}
		return int(n), nil
	case ast.FloatValue:
		f, err := strconv.ParseFloat(v.Raw, 64)
		if err != nil {
			return nil, fmt.Errorf("bad float %q", v.Raw)
		}
		return f, nil
	case ast.StringValue, ast.BlockValue, ast.EnumValue:
		return v.Raw, nil
	case ast.BooleanValue:
		return v.Raw == "true", nil
	case ast.NullValue:
		return nil, nil
	case ast.ListValue:
		out := make([]any, 0, len(v.Children))
		for _, c := range v.Children {
			x, err := gqlValue(c.Value, vars, defaults, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, x)
		}
		return out, nil
	case ast.ObjectValue:
		out := make(map[string]any, len(v.Children))
		for _, c := range v.Children {
			x, err := gqlValue(c.Value, vars, defaults, depth+1)
			if err != nil {
				return nil, err
			}
			if x != nil {
				out[c.Name] = x
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown value kind %d", v.Kind)
}

// normalizeVar gives variables from JSON the number types of the rest.
func normalizeVar(x any) any {
	switch t := x.(type) {
	case float64:
		if t == float64(int(t)) {
			return int(t)
		}
	case map[string]any:
		for k, e := range t {
			t[k] = normalizeVar(e)
		}
	case []any:
		for i, e := range t {
			t[i] = normalizeVar(e)
		}
	}
	return x
}

// snakeCase turns a GraphQL field name (pullRequestId) into a param name
// (pull_request_id), as REST spells it.
func snakeCase(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			if i > 0 && !(s[i-1] >= 'A' && s[i-1] <= 'Z') {
				b.WriteByte('_')
			}
			b.WriteByte(c + 'a' - 'A')
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
