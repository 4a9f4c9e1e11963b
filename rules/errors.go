package rules

import (
	"errors"
	"fmt"
	"strings"

	"github.com/goccy/go-yaml"
)

// A PosError is a problem in a policy or test file, at file:line:col.
type PosError struct {
	File string
	Line int
	Col  int
	Msg  string
}

func (e *PosError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// Errors is every problem found while loading a policy, in file order.
type Errors []*PosError

func (l Errors) Error() string {
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// err returns l as an error, or nil when it is empty.
func (l Errors) err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}

// yamlError turns an error from the YAML decoder into a PosError.
func yamlError(file string, err error) *PosError {
	var ye yaml.Error
	if errors.As(err, &ye) {
		pe := &PosError{File: file, Msg: cleanYAMLMessage(ye.GetMessage())}
		if tk := ye.GetToken(); tk != nil && tk.Position != nil {
			pe.Line, pe.Col = tk.Position.Line, tk.Position.Column
		}
		return pe
	}
	return &PosError{File: file, Msg: err.Error()}
}

// cleanYAMLMessage rewrites the decoder's Go-centred wording for people who
// write YAML.
func cleanYAMLMessage(m string) string {
	m = strings.TrimSpace(m)
	if strings.HasPrefix(m, "unknown field ") {
		return m + " (not a known key; check the spelling)"
	}
	if i := strings.Index(m, " into Go struct field "); i >= 0 {
		// "cannot unmarshal []interface {} into Go struct field Rule.Actions of type string"
		rest := m[i+len(" into Go struct field "):]
		field, typ, _ := strings.Cut(rest, " of type ")
		if j := strings.LastIndexByte(field, '.'); j >= 0 {
			field = field[j+1:]
		}
		return fmt.Sprintf("wrong type for %s: want %s", strings.ToLower(field), yamlTypeName(typ))
	}
	return m
}

func yamlTypeName(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map["), strings.HasPrefix(goType, "rules."):
		return "a mapping"
	case goType == "int":
		return "a number"
	case goType == "string", strings.HasSuffix(goType, "Effect"), strings.HasSuffix(goType, "Mode"):
		return "a string"
	}
	return goType
}
