package connectors

import (
	"fmt"
	"testing"
)

// BenchmarkClassifyREST classifies REST requests through the registry, as
// the gateway does: a read and a merge with a small JSON body.
func BenchmarkClassifyREST(b *testing.B) {
	reg := testRegistry(b)
	get := newRequest("GET", "api.github.com", "/repos/acme/app/pulls/42", "", nil, false)
	merge := newRequest("PUT", "api.github.com", "/repos/acme/app/pulls/42/merge", "", []byte(`{"merge_method":"squash","sha":"6dcb09b5b57875f334f61aebed695e2e4193db5e"}`), false)
	for _, r := range []*Request{get, merge} {
		r.HTTP.Header.Set("User-Agent", "GitHub CLI 2.23.0")
		r.HTTP.Header.Set("Accept", "application/vnd.github.merge-info-preview+json")
		r.HTTP.Header.Set("Authorization", "token not-a-real-token")
		r.HTTP.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	b.Run("get", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := reg.Classify(get); err != nil {
				b.Fatal(err)
			}
		}
	})
	// A read of a pull request not seen before: nothing is shared yet.
	b.Run("get-new", func(b *testing.B) {
		reqs := make([]*Request, 4096)
		for i := range reqs {
			reqs[i] = newRequest("GET", "api.github.com", fmt.Sprintf("/repos/acme/app/pulls/%d", 1000+i), "", nil, false)
			reqs[i].HTTP.Header = get.HTTP.Header
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := reg.Classify(reqs[i%len(reqs)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("merge", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := reg.Classify(merge); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkClassifyGraphQL classifies gh's pull request creation.
func BenchmarkClassifyGraphQL(b *testing.B) {
	reg := testRegistry(b)
	body := []byte(`{"query":"\n\t\tmutation PullRequestCreate($input: CreatePullRequestInput!) {\n\t\t\tcreatePullRequest(input: $input) {\n\t\t\t\tpullRequest {\n\t\t\t\t\tid\n\t\t\t\t\turl\n\t\t\t\t}\n\t\t\t}\n\t}","variables":{"input":{"baseRefName":"main","body":"my body","draft":false,"headRefName":"feature","maintainerCanModify":true,"repositoryId":"R_kgDOExample","title":"my title"}}}`)
	r := newRequest("POST", "api.github.com", "/graphql", "", body, false)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Classify(r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClassifyPush classifies a one-ref git push.
func BenchmarkClassifyPush(b *testing.B) {
	reg := testRegistry(b)
	body := append(pkts(oidA+" "+oidB+" refs/heads/main\x00"+caps, "0000"), pack0...)
	r := receivePackRequest(body, true)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Classify(r); err != nil {
			b.Fatal(err)
		}
	}
}
