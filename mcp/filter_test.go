package mcp

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func hideDelete(kind ListKind, name string) bool { return kind == ToolList && name == "delete" }

const toolList = `{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"read","inputSchema":{"type":"object"}},{"name":"delete","inputSchema":{"type":"object"}}],"nextCursor":"c2"}}`

func toolNames(t *testing.T, msg []byte) []string {
	t.Helper()
	var m struct {
		Result struct {
			Tools []struct {
				Name string `json:"name"`
			} `json:"tools"`
			NextCursor string `json:"nextCursor"`
		} `json:"result"`
	}
	if err := json.Unmarshal(msg, &m); err != nil {
		t.Fatalf("%v: %s", err, msg)
	}
	if m.Result.NextCursor != "c2" {
		t.Errorf("nextCursor lost: %s", msg)
	}
	var names []string
	for _, tl := range m.Result.Tools {
		names = append(names, tl.Name)
	}
	return names
}

func TestFilterJSONResponse(t *testing.T) {
	res := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}, "Content-Length": {"999"}},
		Body: io.NopCloser(strings.NewReader(toolList))}
	if err := ResponseFilter(map[string]ListKind{idKey([]byte("7")): ToolList}, hideDelete)(res); err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	if got := toolNames(t, body); strings.Join(got, ",") != "read" {
		t.Fatalf("tools %v", got)
	}
	if res.ContentLength != int64(len(body)) || res.Header.Get("Content-Length") != itoa(len(body)) {
		t.Errorf("length %d / %s for %d bytes", res.ContentLength, res.Header.Get("Content-Length"), len(body))
	}
	// Another id is not touched.
	res = &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(toolList))}
	_ = ResponseFilter(map[string]ListKind{idKey([]byte(`"7"`)): ToolList}, hideDelete)(res)
	body, _ = io.ReadAll(res.Body)
	if string(body) != toolList {
		t.Errorf("answer to another id changed: %s", body)
	}
	// What cannot be read is replaced, not passed on (fail closed).
	res = &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(`{"jsonrpc":"2.0","id":7,"result":{"tools":"nope"}}`))}
	_ = ResponseFilter(map[string]ListKind{idKey([]byte("7")): ToolList}, hideDelete)(res)
	body, _ = io.ReadAll(res.Body)
	if !bytes.Contains(body, []byte("could not filter")) || bytes.Contains(body, []byte("nope")) {
		t.Errorf("unreadable list passed on: %s", body)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// An event stream goes on event by event: a progress notification reaches
// the client while the server is still working on the result.
func TestFilterSSEStreams(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	res := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/event-stream"}}, Body: pr}
	if err := ResponseFilter(map[string]ListKind{idKey([]byte("7")): ToolList}, hideDelete)(res); err != nil {
		t.Fatal(err)
	}
	events := make(chan Event, 4)
	go func() {
		sc := NewSSEScanner(res.Body, 0)
		for {
			raw, err := sc.Next()
			if err != nil {
				close(events)
				return
			}
			events <- ParseEvent(raw)
		}
	}()
	progress := `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}`
	io.WriteString(pw, "event: message\nid: 1\ndata: "+progress+"\n\n")
	select {
	case ev := <-events:
		if string(ev.Data) != progress || ev.ID != "1" {
			t.Fatalf("first event %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the progress event was held back")
	}
	// The answer, split over writes and lines.
	cut := strings.Index(toolList, `,"nextCursor"`)
	io.WriteString(pw, "event: message\r\ndata: "+toolList[:cut])
	io.WriteString(pw, "\r\ndata: "+toolList[cut:]+"\r\n\r\n")
	ev := <-events
	if got := toolNames(t, ev.Data); strings.Join(got, ",") != "read" || ev.Event != "message" {
		t.Fatalf("list event %+v, tools %v", ev, got)
	}
	// Once the list is answered, the rest passes through as it is.
	io.WriteString(pw, "data: "+toolList+"\n\n")
	pw.Close()
	ev = <-events
	if string(ev.Data) != toolList {
		t.Fatalf("later event changed: %s", ev.Data)
	}
	if _, ok := <-events; ok {
		t.Fatal("more events than sent")
	}
}

func TestWrapConfig(t *testing.T) {
	in := `{"mcpServers":{"Docs Server":{"command":"npx","args":["-y","docs-mcp"],"env":{"A":"b"}},"web":{"type":"http","url":"https://x.test/mcp"},"done":{"command":"tf","args":["mcp","wrap","--server","done","--","x"]}},"other":1}`
	out, wrapped, err := WrapConfig([]byte(in), WrapConfigOptions{Policy: "/p"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(wrapped, ",") != "Docs Server" {
		t.Fatalf("wrapped %v", wrapped)
	}
	var doc struct {
		Servers map[string]struct {
			Command string            `json:"command"`
			Args    []string          `json:"args"`
			Env     map[string]string `json:"env"`
			URL     string            `json:"url"`
		} `json:"mcpServers"`
		Other int `json:"other"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	s := doc.Servers["Docs Server"]
	if s.Command != "tf" || strings.Join(s.Args, " ") != "mcp wrap --server docs-server --policy /p -- npx -y docs-mcp" || s.Env["A"] != "b" {
		t.Errorf("wrapped server: %+v", s)
	}
	if doc.Servers["web"].URL != "https://x.test/mcp" || doc.Other != 1 || doc.Servers["done"].Args[5] != "x" {
		t.Errorf("other entries changed: %s", out)
	}
	again, wrapped, err := WrapConfig(out, WrapConfigOptions{Policy: "/p"})
	if err != nil || len(wrapped) != 0 || !bytes.Equal(again, out) {
		t.Errorf("not idempotent: %v %v", wrapped, err)
	}
}

// readLines returns a channel of the lines r yields.
func readLines(r io.Reader) <-chan string {
	ch := make(chan string, 64)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	return ch
}
