package jsonbody

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestDecodeRefusesAmbiguity(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"duplicate", `{"force":false,"force":true}`},
		{"case variant", `{"query":"mutation{deleteRef}","Query":"{viewer{login}}"}`},
		{"nested case variant", `{"config":{"url":"a","URL":"b"}}`},
		{"escaped duplicate", `{"force":false,"for\u0063e":true}`},
		{"kelvin sign folds to k", `{"key":1,"\u212aey":2}`},
		{"invalid utf-8 in a string", "{\"a\":\"\xff\"}"},
		{"invalid utf-8 in a name", "{\"\xff\":1}"},
		{"duplicate in an array element", `{"a":[{"x":1,"x":2}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Decode([]byte(tc.body)); !errors.Is(err, ErrAmbiguous) {
				t.Errorf("Decode(%s) = %v, want an ambiguity", tc.body, err)
			}
			if err := Check([]byte(tc.body)); !errors.Is(err, ErrAmbiguous) {
				t.Errorf("Check(%s) = %v, want an ambiguity", tc.body, err)
			}
			err := Members([]byte(tc.body), func(_, _ []byte) error { t.Fatal("visited an ambiguous body"); return nil })
			if !errors.Is(err, ErrAmbiguous) {
				t.Errorf("Members(%s) = %v, want an ambiguity", tc.body, err)
			}
		})
	}
}

func TestDecodeRefusesInvalid(t *testing.T) {
	for _, body := range []string{``, ` `, `{`, `{"a":1}x`, `{"a":1}{"b":2}`, `[1,]`, `{"a":01}`, `"\x01"`, `1e400`, strings.Repeat(`[`, MaxDepth+1) + strings.Repeat(`]`, MaxDepth+1)} {
		_, err := Decode([]byte(body))
		if err == nil {
			t.Errorf("Decode(%q) accepted", body)
			continue
		}
		if errors.Is(err, ErrAmbiguous) {
			t.Errorf("Decode(%q) = %v, want invalid, not ambiguous", body, err)
		}
	}
}

func TestMembers(t *testing.T) {
	body := []byte(` {"sha" : "abc", "n\u0061me":{"a":[1,2]}, "force":true , "x":1.5}`)
	var got []string
	err := Members(body, func(name, raw []byte) error {
		got = append(got, string(name)+"="+string(raw))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`sha="abc"`, `name={"a":[1,2]}`, `force=true`, `x=1.5`}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("members = %q, want %q", got, want)
	}
	if err := Members([]byte(`[1]`), func(_, _ []byte) error { return nil }); err == nil {
		t.Error("an array was read as an object")
	}
}

func TestElements(t *testing.T) {
	var got []string
	err := Elements([]byte(` [ {"jsonrpc":"2.0","id":1} , 2,"x" ,[ ] ] `), func(raw []byte) error {
		got = append(got, string(raw))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{`{"jsonrpc":"2.0","id":1}`, `2`, `"x"`, `[ ]`}; !reflect.DeepEqual(got, want) {
		t.Errorf("elements %q, want %q", got, want)
	}
	for _, bad := range []string{`{"a":1}`, `[{"id":1,"ID":2}]`, `[1,]`, `[1] [2]`} {
		if err := Elements([]byte(bad), func([]byte) error { t.Fatalf("visited %s", bad); return nil }); err == nil {
			t.Errorf("Elements(%s) accepted", bad)
		}
	}
}

func TestDecodeValues(t *testing.T) {
	v, err := Decode([]byte(`{"a":1,"b":-2.5,"c":"x\"y","d":[true,false,null],"e":{},"f":1e2,"g":"é"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"a": 1, "b": -2.5, "c": `x"y`, "d": []any{true, false, nil}, "e": map[string]any{}, "f": 100.0, "g": "é"}
	if !reflect.DeepEqual(v, want) {
		t.Errorf("Decode = %#v, want %#v", v, want)
	}
}

// FuzzDecode checks the strict reader against encoding/json: whatever it
// accepts, encoding/json accepts and reads to the same value, and no object
// in it has two names that encoding/json would match to one struct field;
// whatever encoding/json refuses, it refuses too.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"query":"q","Query":"r"}`, `{"a":1,"a":2}`, `{"a":[1,{"b":null}]}`, `"\u00e9"`, `1.5e3`, `{"\u212a":1,"k":2}`, "\"\xff\"", `{"x":{"y":{"z":[]}}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Decode(data)
		cerr := Check(data)
		if (err == nil) != (cerr == nil) {
			t.Fatalf("Decode and Check disagree on %q: %v, %v", data, err, cerr)
		}
		if err != nil {
			return
		}
		var std any
		dec := json.NewDecoder(strings.NewReader(string(data)))
		dec.UseNumber()
		if derr := dec.Decode(&std); derr != nil || dec.More() {
			t.Fatalf("accepted %q, which encoding/json refuses: %v", data, derr)
		}
		if !reflect.DeepEqual(v, normalize(std)) {
			t.Fatalf("%q: read as %#v, encoding/json reads %#v", data, v, normalize(std))
		}
		noFoldTwins(t, v)
		if a, ok := v.([]any); ok {
			i := 0
			if err := Elements(data, func(raw []byte) error {
				x, err := Decode(raw)
				if err != nil || !reflect.DeepEqual(x, a[i]) {
					t.Fatalf("element %d: %#v, %v; want %#v", i, x, err, a[i])
				}
				i++
				return nil
			}); err != nil || i != len(a) {
				t.Fatalf("Elements(%q) = %v after %d elements, want %d", data, err, i, len(a))
			}
		}
		if m, ok := v.(map[string]any); ok {
			n := 0
			if err := Members(data, func(name, raw []byte) error {
				n++
				x, err := Decode(raw)
				if err != nil {
					return err
				}
				if !reflect.DeepEqual(x, m[string(name)]) {
					t.Fatalf("member %q: %#v, want %#v", name, x, m[string(name)])
				}
				return nil
			}); err != nil || n != len(m) {
				t.Fatalf("Members(%q) = %v after %d members, want %d", data, err, n, len(m))
			}
		}
	})
}

func noFoldTwins(t *testing.T, v any) {
	switch x := v.(type) {
	case map[string]any:
		for a := range x {
			for b := range x {
				if a != b && strings.EqualFold(a, b) {
					t.Fatalf("accepted names %q and %q", a, b)
				}
			}
			noFoldTwins(t, x[a])
		}
	case []any:
		for _, e := range x {
			noFoldTwins(t, e)
		}
	}
}

func normalize(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return int(i)
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e)
		}
	case []any:
		for i, e := range x {
			x[i] = normalize(e)
		}
	}
	return v
}
