package connectors

import (
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"unsafe"
)

// TestSharedMapsStayCorrect classifies many requests over more repositories
// and header sets than the caches hold, from several goroutines (run with
// -race), and checks every action's resource and headers against the
// request, so that a shared map is never another request's.
func TestSharedMapsStayCorrect(t *testing.T) {
	reg := testRegistry(t)
	const workers, perWorker = 4, 3 * mapCacheSlots
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				owner, repo := fmt.Sprintf("o%d", i%(2*mapCacheSlots)), fmt.Sprintf("r%d", (i+w)%7)
				ua := fmt.Sprintf("agent/%d", (i*w)%(mapCacheSlots+3))
				number := 1 + (i*w)%(mapCacheSlots+5)
				r := newRequest("GET", "api.github.com", fmt.Sprintf("/repos/%s/%s/pulls/%d", owner, repo, number), "", nil, false)
				r.HTTP.Header.Set("User-Agent", ua)
				if i%3 == 0 {
					r.HTTP.Header.Set("Accept", "application/json")
				}
				acts, err := reg.Classify(r)
				if err != nil {
					errs <- err
					return
				}
				wantRes := map[string]string{"owner": owner, "repo": repo}
				wantHdr := map[string]string{"User-Agent": ua}
				if i%3 == 0 {
					wantHdr["Accept"] = "application/json"
				}
				if !maps.Equal(acts[0].Resource, wantRes) || !maps.Equal(acts[0].Request.Headers, wantHdr) || len(acts[0].Params) != 1 || acts[0].Params["number"] != number {
					errs <- fmt.Errorf("request %d of worker %d: resource %v headers %v params %v, want %v %v %d", i, w, acts[0].Resource, acts[0].Request.Headers, acts[0].Params, wantRes, wantHdr, number)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestRepoCreateDoesNotTouchSharedResource checks that a refinement that
// names the repository replaces the shared {owner} map instead of writing
// into it.
func TestRepoCreateDoesNotTouchSharedResource(t *testing.T) {
	reg := testRegistry(t)
	list := newRequest("GET", "api.github.com", "/orgs/acme/repos", "", nil, false)
	before, err := reg.Classify(list)
	if err != nil {
		t.Fatal(err)
	}
	create := newRequest("POST", "api.github.com", "/orgs/acme/repos", "", []byte(`{"name":"new-app"}`), false)
	created, err := reg.Classify(create)
	if err != nil {
		t.Fatal(err)
	}
	if got := created[0].Resource; got["owner"] != "acme" || got["repo"] != "new-app" {
		t.Fatalf("create resource = %v", got)
	}
	after, err := reg.Classify(list)
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range []map[string]string{before[0].Resource, after[0].Resource} {
		if len(res) != 1 || res["owner"] != "acme" {
			t.Fatalf("list resource = %v, want only the owner", res)
		}
	}
}

// TestHeaderMapKeepsNoLongValue checks that a recorded header is cut to
// its limit and that the cached copy is its own string.
func TestHeaderMapKeepsNoLongValue(t *testing.T) {
	reg := testRegistry(t)
	long := strings.Repeat("x", 10*maxHeaderValue)
	r := newRequest("GET", "example.com", "/", "", nil, false)
	r.HTTP.Header.Set("User-Agent", long)
	acts, err := reg.Classify(r)
	if err != nil {
		t.Fatal(err)
	}
	if got := acts[0].Request.Headers["User-Agent"]; got != long[:maxHeaderValue] {
		t.Fatalf("recorded %d bytes, want %d", len(got), maxHeaderValue)
	}
	if unsafe.StringData(acts[0].Request.Headers["User-Agent"]) == unsafe.StringData(long) {
		t.Fatal("the cached header value shares the request's longer string")
	}
}
