package mcp

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// The decoder's fast paths (the string arena, the shared unescape buffer
// and its hand-over, interned keys, the array stack, shared small numbers)
// give what encoding/json gives, however the strings and arrays of one
// input follow each other.
func TestDecoderFastPathsMatchEncodingJSON(t *testing.T) {
	long := strings.Repeat(`line \"q\"\n\t\u00e9\ud83d\ude00 `, 40)
	var objs []string
	for i := 0; i < 40; i++ {
		// More distinct keys than the key cache holds, repeated.
		objs = append(objs, fmt.Sprintf(`{"k%d":"v%d","key":"option-%d","value":%d,"neg":-%d,"f":%d.5,"e":%de1}`, i%20, i, i, i*7, i, i, i))
	}
	inputs := []string{
		`{"a":"` + long + `","b":"` + long + `","c":"x\ny","d":"` + long[:100] + `"}`,
		`["x\ny","` + long + `","short\t","` + strings.Repeat("p", 200) + `"]`,
		`{"opts":[` + strings.Join(objs, ",") + `],"nested":[[1,[2,[3,[]]],4],[],[{"a":[5,6]}]]}`,
		`[0,1,9,10,99,100,255,256,999,1000,-0,0.0,1e2,12.5]`,
		`["\ud800","\ud800\u0041","\udc00\ud800x","\ud83d\ude00","` + strings.Repeat(`\u00e9`, 30) + `"]`,
		`{"` + strings.Repeat("k", 100) + `":1,"\u006b":2}`,
	}
	for _, in := range inputs {
		d := &decoder{b: []byte(in)}
		got, err := d.value()
		if err == nil {
			err = d.end()
		}
		if err != nil {
			t.Fatalf("%.60s: %v", in, err)
		}
		var want any
		if err := json.Unmarshal([]byte(in), &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%.60s: got %#v, want %#v", in, got, want)
		}
	}
	// A key spelled with an escape is still a duplicate of the plain one.
	d := &decoder{b: []byte(`{"k":1,"\u006b":2}`)}
	if _, err := d.value(); err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Errorf("escaped duplicate key: %v", err)
	}
}
