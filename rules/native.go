package rules

import (
	"regexp"
	"strings"
	"time"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm/runtime"
)

// A native condition evaluates the common shapes of `when` (comparisons of
// action fields with literals, combined with and/or/not) directly on the
// action, without building an environment or running the expr VM: a
// 1,000-rule policy evaluates dozens of conditions per decision, and the
// VM's reflective field access dominates that cost.
//
// It answers only when it is sure to agree with expr: ok is false whenever
// a value has a type it does not handle (or an operation would fail), and
// the caller then runs the compiled program, which gives the authoritative
// result or error. A differential test and fuzz target hold the two equal.
type native func(c *evalCtx) (result, ok bool)

// evalCtx is what a native condition reads: the action and the clock,
// read at most once per decision.
type evalCtx struct {
	a      *Action
	nowFn  func() time.Time
	now    time.Time
	hasNow bool
}

func (c *evalCtx) time() time.Time {
	if !c.hasNow {
		switch {
		case !c.a.Time.IsZero():
			c.now = c.a.Time // as newEnv: a recorded action is judged at its time
		case c.nowFn != nil:
			c.now = c.nowFn()
		default:
			c.now = time.Now()
		}
		c.hasNow = true
	}
	return c.now
}

// compileNative returns the native form of a checked expression tree, or
// nil when the tree holds something outside the supported shapes.
func compileNative(n ast.Node) native {
	switch n := n.(type) {
	case *ast.BoolNode:
		v := n.Value
		return func(*evalCtx) (bool, bool) { return v, true }
	case *ast.UnaryNode:
		if n.Operator != "!" && n.Operator != "not" {
			return nil
		}
		inner := compileNative(n.Node)
		if inner == nil {
			return nil
		}
		return func(c *evalCtx) (bool, bool) {
			r, ok := inner(c)
			return !r, ok
		}
	case *ast.BinaryNode:
		switch n.Operator {
		case "&&", "and", "||", "or":
			l, r := compileNative(n.Left), compileNative(n.Right)
			if l == nil || r == nil {
				return nil
			}
			if n.Operator == "&&" || n.Operator == "and" {
				return func(c *evalCtx) (bool, bool) {
					lv, ok := l(c)
					if !ok || !lv {
						return false, ok
					}
					return r(c)
				}
			}
			return func(c *evalCtx) (bool, bool) {
				lv, ok := l(c)
				if !ok || lv {
					return lv, ok
				}
				return r(c)
			}
		}
		return compileComparison(n)
	}
	return nil
}

// compileComparison handles `field OP literal`.
func compileComparison(n *ast.BinaryNode) native {
	get := compileField(n.Left)
	if get == nil {
		return nil
	}
	switch n.Operator {
	case "==", "!=":
		lit, ok := literal(n.Right)
		if !ok {
			return nil
		}
		neq := n.Operator == "!="
		return func(c *evalCtx) (bool, bool) {
			v, ok := get(c)
			if !ok {
				return false, false
			}
			return runtime.Equal(v, lit) != neq, true
		}
	case "<", ">", "<=", ">=":
		lit, ok := literal(n.Right)
		if !ok {
			return nil
		}
		if _, isNum := lit.(int); !isNum {
			if _, isFloat := lit.(float64); !isFloat {
				return nil
			}
		}
		op := n.Operator
		return func(c *evalCtx) (bool, bool) {
			v, ok := get(c)
			if !ok || !isNumber(v) {
				return false, false // strings, nil and others: let expr decide or fail
			}
			switch op {
			case "<":
				return runtime.Less(v, lit), true
			case ">":
				return runtime.More(v, lit), true
			case "<=":
				return runtime.LessOrEqual(v, lit), true
			}
			return runtime.MoreOrEqual(v, lit), true
		}
	case "matches", "startsWith", "endsWith", "contains":
		s, ok := n.Right.(*ast.StringNode)
		if !ok {
			return nil
		}
		var test func(string) bool
		switch n.Operator {
		case "matches":
			if set, ok := literalAlternation(s.Value); ok {
				// ^(main|staging|production)$ is a set of names: look it up.
				test = func(v string) bool { _, in := set[v]; return in }
				break
			}
			re, err := regexp.Compile(s.Value)
			if err != nil {
				return nil
			}
			test = re.MatchString
		case "startsWith":
			test = func(v string) bool { return strings.HasPrefix(v, s.Value) }
		case "endsWith":
			test = func(v string) bool { return strings.HasSuffix(v, s.Value) }
		default:
			test = func(v string) bool { return strings.Contains(v, s.Value) }
		}
		return func(c *evalCtx) (bool, bool) {
			v, ok := get(c)
			switch {
			case !ok:
				return false, false
			case v == nil:
				return false, true // expr: a nil operand gives false
			}
			str, isStr := v.(string)
			if !isStr {
				return false, false
			}
			return test(str), true
		}
	case "in":
		c, ok := n.Right.(*ast.ConstantNode)
		if !ok {
			return nil
		}
		set, ok := c.Value.(map[string]struct{})
		if !ok {
			return nil
		}
		return func(c *evalCtx) (bool, bool) {
			v, ok := get(c)
			if !ok {
				return false, false
			}
			str, isStr := v.(string)
			if !isStr {
				return false, false
			}
			_, in := set[str]
			return in, true
		}
	}
	return nil
}

func isNumber(v any) bool {
	switch v.(type) {
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64:
		return true
	}
	return false
}

func literal(n ast.Node) (any, bool) {
	switch n := n.(type) {
	case *ast.StringNode:
		return n.Value, true
	case *ast.IntegerNode:
		return n.Value, true
	case *ast.FloatNode:
		return n.Value, true
	case *ast.BoolNode:
		return n.Value, true
	case *ast.NilNode:
		return nil, true
	}
	return nil, false
}

// compileField returns a getter for a field of the environment, with the
// value expr would fetch: "" for a missing resource or header key, nil for a
// missing param.
func compileField(n ast.Node) func(*evalCtx) (any, bool) {
	if b, ok := n.(*ast.BuiltinNode); ok {
		return compileLen(b)
	}
	if call, ok := n.(*ast.CallNode); ok {
		return compileNowCall(call)
	}
	m, ok := n.(*ast.MemberNode)
	if !ok || m.Optional || m.Method {
		return nil
	}
	prop, ok := m.Property.(*ast.StringNode)
	if !ok {
		return nil
	}
	key := prop.Value
	if inner, ok := m.Node.(*ast.MemberNode); ok {
		// request.headers.X
		root, ok := inner.Node.(*ast.IdentifierNode)
		p, pok := inner.Property.(*ast.StringNode)
		if !ok || !pok || root.Value != "request" || p.Value != "headers" || inner.Optional || inner.Method {
			return nil
		}
		return func(c *evalCtx) (any, bool) { return c.a.Request.Headers[key], true }
	}
	root, ok := m.Node.(*ast.IdentifierNode)
	if !ok {
		return nil
	}
	switch root.Value {
	case "resource":
		return func(c *evalCtx) (any, bool) { return c.a.Resource[key], true }
	case "params":
		return func(c *evalCtx) (any, bool) { return c.a.Params[key], true }
	case "action":
		switch key {
		case "id":
			return func(c *evalCtx) (any, bool) { return c.a.ID, true }
		case "type":
			return func(c *evalCtx) (any, bool) { return c.a.Type, true }
		case "connector":
			return func(c *evalCtx) (any, bool) { return c.a.Connector, true }
		case "gateway":
			return func(c *evalCtx) (any, bool) { return c.a.Gateway, true }
		case "agent":
			return func(c *evalCtx) (any, bool) { return c.a.Agent, true }
		}
	case "request":
		switch key {
		case "method":
			return func(c *evalCtx) (any, bool) { return c.a.Request.Method, true }
		case "scheme":
			return func(c *evalCtx) (any, bool) { return c.a.Request.Scheme, true }
		case "host":
			return func(c *evalCtx) (any, bool) { return c.a.Request.Host, true }
		case "port":
			return func(c *evalCtx) (any, bool) { return c.a.Request.Port, true }
		case "path":
			return func(c *evalCtx) (any, bool) { return c.a.Request.Path, true }
		case "query":
			return func(c *evalCtx) (any, bool) { return c.a.Request.Query, true }
		}
	}
	return nil
}

// compileLen handles len(field) for the kinds of values a field holds;
// anything else (nil among them, where expr fails) is left to expr.
func compileLen(b *ast.BuiltinNode) func(*evalCtx) (any, bool) {
	if b.Name != "len" || len(b.Arguments) != 1 {
		return nil
	}
	get := compileField(b.Arguments[0])
	if get == nil {
		return nil
	}
	return func(c *evalCtx) (any, bool) {
		v, ok := get(c)
		if !ok {
			return nil, false
		}
		switch v := v.(type) {
		case string:
			return len(v), true
		case []any:
			return len(v), true
		case map[string]any:
			return len(v), true
		}
		return nil, false
	}
}

// compileNowCall handles the clock methods that return an int, for office
// hours and the like: now.Hour(), now.Minute(), now.Day(), now.YearDay(),
// now.Year(), now.Second().
func compileNowCall(call *ast.CallNode) func(*evalCtx) (any, bool) {
	m, ok := call.Callee.(*ast.MemberNode)
	if !ok || len(call.Arguments) != 0 || m.Optional {
		return nil
	}
	root, ok := m.Node.(*ast.IdentifierNode)
	prop, pok := m.Property.(*ast.StringNode)
	if !ok || !pok || root.Value != "now" {
		return nil
	}
	var f func(time.Time) int
	switch prop.Value {
	case "Hour":
		f = time.Time.Hour
	case "Minute":
		f = time.Time.Minute
	case "Second":
		f = time.Time.Second
	case "Day":
		f = time.Time.Day
	case "YearDay":
		f = time.Time.YearDay
	case "Year":
		f = time.Time.Year
	default:
		return nil
	}
	return func(c *evalCtx) (any, bool) { return f(c.time()), true }
}

// literalAlternation recognises the most common pattern in policies, an
// anchored choice of literal names such as ^(main|release/1\.0)$ (or a
// single ^name$), and returns the names. Anything with another
// metacharacter is left to the regexp package.
func literalAlternation(re string) (map[string]struct{}, bool) {
	body, ok := strings.CutPrefix(re, "^")
	if !ok {
		return nil, false
	}
	if body, ok = strings.CutSuffix(body, "$"); !ok || strings.HasSuffix(body, `\`) {
		return nil, false
	}
	if inner, ok := strings.CutPrefix(body, "(?:"); ok {
		if body, ok = strings.CutSuffix(inner, ")"); !ok {
			return nil, false
		}
	} else if inner, ok := strings.CutPrefix(body, "("); ok {
		if body, ok = strings.CutSuffix(inner, ")"); !ok {
			return nil, false
		}
	}
	set := map[string]struct{}{}
	var cur strings.Builder
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case c == '\\':
			if i+1 >= len(body) || !strings.ContainsRune(`.-/_+*?()[]{}|^$\`, rune(body[i+1])) {
				return nil, false // \d, \b and the like are classes, not literals
			}
			i++
			cur.WriteByte(body[i])
		case c == '|':
			set[cur.String()] = struct{}{}
			cur.Reset()
		case strings.IndexByte(`.+*?()[]{}^$`, c) >= 0:
			return nil, false
		default:
			if c >= 0x80 {
				return nil, false // keep to ASCII: no case folding or UTF-8 questions
			}
			cur.WriteByte(c)
		}
	}
	set[cur.String()] = struct{}{}
	return set, true
}
