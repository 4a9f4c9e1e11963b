package schema_test

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/tameflare/tf/schema"
	"github.com/tameflare/tf/testdata"
)

// The committed schemas are what editors load; they must be what the Go
// types generate today.
func TestCommittedSchemasAreCurrent(t *testing.T) {
	for _, c := range []struct {
		file      string
		gen       func() ([]byte, error)
		committed []byte
	}{
		{"tameflare.schema.json", schema.GeneratePolicy, schema.Policy()},
		{"tameflare-tests.schema.json", schema.GenerateTests, schema.Tests()},
	} {
		got, err := c.gen()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, c.committed) {
			t.Errorf("schema/%s is stale: run `just schema` (go generate) and commit it", c.file)
		}
		if bytes.Contains(got, []byte(`"$defs"`)) || bytes.Contains(got, []byte(`"$ref"`)) {
			t.Errorf("%s uses references; the draft-07 schema is meant to be inlined", c.file)
		}
		if !bytes.Contains(got, []byte(`"$schema": "http://json-schema.org/draft-07/schema#"`)) {
			t.Errorf("%s does not declare draft-07", c.file)
		}
	}
}

func compile(t *testing.T, id string, doc []byte) *jsonschema.Schema {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft7)
	if err := c.AddResource(id, v); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(id)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// yamlInstance turns a YAML document into the JSON value a validator sees.
func yamlInstance(t *testing.T, src []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(src, &v); err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

func TestExamplePolicyValidatesWithDraft07(t *testing.T) {
	policy := compile(t, schema.PolicyID, schema.Policy())
	tests := compile(t, schema.TestsID, schema.Tests())
	ex := testdata.ExamplePolicy()
	n := 0
	err := fs.WalkDir(ex, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".yaml") {
			return err
		}
		src, err := fs.ReadFile(ex, p)
		if err != nil {
			return err
		}
		s := policy
		if strings.HasPrefix(p, "tests/") {
			s = tests
		}
		if err := s.Validate(yamlInstance(t, src)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 3 {
		t.Fatalf("validated %d files, want the policy, a fragment and a test file", n)
	}
}

func TestSchemaReportsTypos(t *testing.T) {
	policy := compile(t, schema.PolicyID, schema.Policy())
	for name, src := range map[string]string{
		"misspelt rule key": "version: 1\nrules:\n  - name: x\n    actions: [github.pr.merge]\n    decison: deny\n",
		"misspelt top key":  "version: 1\ndefualt: deny\n",
		"bad decision":      "version: 1\nrules:\n  - name: x\n    actions: [a.b]\n    decision: maybe\n",
		"unknown version":   "version: 2\n",
		"missing actions":   "version: 1\nrules:\n  - name: x\n    decision: deny\n",
	} {
		err := policy.Validate(yamlInstance(t, []byte(src)))
		if err == nil {
			t.Errorf("%s: schema accepted it", name)
		}
	}
	err := policy.Validate(yamlInstance(t, []byte("version: 1\nrules:\n  - name: x\n    actions: [github.pr.merge]\n    decison: deny\n")))
	if err == nil || !strings.Contains(err.Error(), "decison") {
		t.Errorf("the typo is not named in %v", err)
	}
}
