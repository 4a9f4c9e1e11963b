// Package schema generates the JSON Schema of policy and policy-test files
// from the rules types, in the draft-07 dialect that yaml-language-server
// reads.
package schema

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"reflect"

	"github.com/invopop/jsonschema"

	"github.com/tameflare/tf/rules"
)

// Draft07 is the dialect of the generated schemas. yaml-language-server, the
// engine behind YAML support in most editors, reads draft-07 and below.
//go:generate go run gen.go

const Draft07 = "http://json-schema.org/draft-07/schema#"

// IDs of the published schemas; editors fetch them through the modeline
// `# yaml-language-server: $schema=...`.
const (
	PolicyID = "https://tameflare.dev/schema/tameflare.schema.json"
	TestsID  = "https://tameflare.dev/schema/tameflare-tests.schema.json"
)

var (
	//go:embed tameflare.schema.json
	committedPolicy []byte
	//go:embed tameflare-tests.schema.json
	committedTests []byte
)

// Policy returns the committed schema of tameflare.yaml. It is also valid
// for policies/*.yaml, whose keys are a subset.
func Policy() []byte { return committedPolicy }

// Tests returns the committed schema of tests/*.yaml.
func Tests() []byte { return committedTests }

// GeneratePolicy builds the schema of tameflare.yaml from rules.File.
func GeneratePolicy() ([]byte, error) {
	return generate(&rules.File{}, PolicyID, "tf policy", "A tf policy: rules that decide what an AI agent may do on the network.")
}

// GenerateTests builds the schema of tests/*.yaml from rules.TestFile.
func GenerateTests() ([]byte, error) {
	return generate(&rules.TestFile{}, TestsID, "tf policy tests", "Cases that a tf policy must decide as expected (tf policy test).")
}

func generate(v any, id, title, desc string) ([]byte, error) {
	r := &jsonschema.Reflector{
		// Inline every definition: draft-07 has no $defs, and a policy's
		// types are small.
		DoNotReference: true,
		// Fields are required only when tagged so; yaml keys are the json ones.
		RequiredFromJSONSchemaTags: true,
		Mapper:                     mapper,
	}
	s := r.Reflect(v)
	s.Version = Draft07
	s.ID = jsonschema.ID(id)
	s.Title = title
	s.Description = desc
	out, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	// Draft-07 spells these keywords as definitions; with DoNotReference
	// none should remain, and a test checks that.
	out = bytes.ReplaceAll(out, []byte(`"$defs"`), []byte(`"definitions"`))
	return append(out, '\n'), nil
}

// mapper describes types whose JSON form is not their Go structure.
func mapper(t reflect.Type) *jsonschema.Schema {
	switch t {
	case reflect.TypeFor[rules.Effect]():
		return &jsonschema.Schema{Type: "string", Enum: []any{"allow", "deny", "require_approval"}}
	case reflect.TypeFor[rules.Mode]():
		return &jsonschema.Schema{Type: "string", Enum: []any{"enforce", "monitor"}}
	}
	return nil
}
