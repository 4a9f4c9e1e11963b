package rules

import (
	"github.com/expr-lang/expr/ast"
)

// ParamsRead says which members of an action's params the conditions of a
// policy can read. A connector may leave the others' object and array
// values undecoded (as json.RawMessage, recorded as they came): decoding a
// large argument object that no rule looks at into maps is most of the
// cost of classifying it.
type ParamsRead struct {
	// All is set when some condition uses params other than by a member
	// name written out (params[k], len(params), a variable bound to
	// params): then every member is read.
	All   bool
	names map[string]bool
}

// Reads reports whether a condition may read params member name.
func (pr ParamsRead) Reads(name string) bool { return pr.All || pr.names[name] }

// ParamsRead returns what the policy's conditions read of params. A nil
// policy, or one not made by loading, reads everything.
func (p *Policy) ParamsRead() ParamsRead {
	if p == nil || p.paramsRead.names == nil {
		return ParamsRead{All: true}
	}
	return p.paramsRead
}

// paramsReadOf works out what the conditions of rules read of params,
// from their syntax trees: params.x and params["x"] read x; any other use
// of params reads everything.
func paramsReadOf(rules []*CompiledRule) ParamsRead {
	pr := ParamsRead{names: map[string]bool{}}
	for _, r := range rules {
		if r.program == nil {
			continue
		}
		v := &paramsVisitor{named: map[*ast.IdentifierNode]bool{}, pr: &pr}
		node := r.program.Node()
		ast.Walk(&node, v)
		if v.bare > len(v.named) {
			pr.All = true
		}
	}
	return pr
}

// paramsVisitor counts the params identifiers of a tree and those that are
// the object of a member access by a constant name.
type paramsVisitor struct {
	named map[*ast.IdentifierNode]bool
	bare  int
	pr    *ParamsRead
}

func (v *paramsVisitor) Visit(n *ast.Node) {
	switch x := (*n).(type) {
	case *ast.IdentifierNode:
		if x.Value == "params" {
			v.bare++
		}
	case *ast.MemberNode:
		id, ok := x.Node.(*ast.IdentifierNode)
		if !ok || id.Value != "params" {
			return
		}
		if s, ok := x.Property.(*ast.StringNode); ok {
			v.named[id] = true
			v.pr.names[s.Value] = true
		}
	}
}
