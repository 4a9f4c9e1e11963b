package rules

import (
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
)

// The typed environment of a `when` expression. Field names are what
// policies write; a name that is not here is a load error.
type exprEnv struct {
	Action   actionEnv         `expr:"action"`
	Resource map[string]string `expr:"resource"`
	Params   map[string]any    `expr:"params"`
	Request  requestEnv        `expr:"request"`
	Now      time.Time         `expr:"now"`
}

type actionEnv struct {
	ID        string `expr:"id"`
	Type      string `expr:"type"`
	Connector string `expr:"connector"`
	Gateway   string `expr:"gateway"`
	Agent     string `expr:"agent"`
}

type requestEnv struct {
	Method  string            `expr:"method"`
	Scheme  string            `expr:"scheme"`
	Host    string            `expr:"host"`
	Port    int               `expr:"port"`
	Path    string            `expr:"path"`
	Query   string            `expr:"query"`
	Headers map[string]string `expr:"headers"`
}

func newEnv(a *Action, now time.Time) *exprEnv {
	if !a.Time.IsZero() {
		// A recorded action is judged at the time it happened, so that
		// replaying it gives the same answer.
		now = a.Time
	}
	return &exprEnv{
		Action:   actionEnv{ID: a.ID, Type: a.Type, Connector: a.Connector, Gateway: a.Gateway, Agent: a.Agent},
		Resource: a.Resource,
		Params:   a.Params,
		Request: requestEnv{
			Method: a.Request.Method, Scheme: a.Request.Scheme, Host: a.Request.Host, Port: a.Request.Port,
			Path: a.Request.Path, Query: a.Request.Query, Headers: a.Request.Headers,
		},
		Now: now,
	}
}

// compileWhen compiles a condition against the typed environment. The
// result must be a boolean.
func compileWhen(src string) (*vm.Program, error) {
	return expr.Compile(src,
		expr.Env(&exprEnv{}),
		expr.AsBool(),
		expr.MaxNodes(maxExprNodes),
		expr.Optimize(true),
	)
}
