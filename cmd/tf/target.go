package main

import (
	"encoding/json"
	"sort"
	"strings"

	"github.com/tameflare/tf/audit"
	"github.com/tameflare/tf/rules"
)

// target is what an action is about, as tf logs shows it: owner/repo, a
// package, an MCP server, a host.
func target(resource map[string]string, host string) string {
	return (&audit.Record{Action: &rules.Action{Resource: resource, Request: rules.Request{Host: host}}}).Target()
}

// paramsLine shows params on one line, sorted, values as JSON (so control
// characters in them are escaped), cut at max bytes.
func paramsLine(params map[string]any, max int) string {
	if len(params) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		if !plainKey(k) {
			q, _ := json.Marshal(k)
			k = string(q)
		}
		v, err := json.Marshal(params[k])
		if err != nil {
			v = []byte("?")
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.Write(v)
		if b.Len() > max {
			break
		}
	}
	s := b.String()
	if len(s) > max {
		s = strings.ToValidUTF8(s[:max], "") + "…"
	}
	return s
}

func plainKey(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}
