package dashboard

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

// The dashboard is a separate loopback listener; the gateway refuses
// loopback destinations that the policy does not name in private_hosts,
// so a governed agent cannot reach it through the proxy.
func TestGovernedClientCannotReachDashboard(t *testing.T) {
	f := start(t)
	_, port, _ := strings.Cut(f.d.Addr(), ":")
	before := f.d.requests.Load()
	for _, u := range []string{
		"http://" + f.d.Addr() + "/traffic",
		"http://localhost:" + port + "/traffic",
		"https://" + f.d.Addr() + "/traffic",
		f.d.URL(),
	} {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := f.agent.Do(req)
		if err == nil {
			res.Body.Close()
			if res.StatusCode != http.StatusForbidden {
				t.Errorf("%s through the proxy: status %d, want 403", u, res.StatusCode)
			}
		}
		t.Logf("%s through the proxy: %v %v", strings.Split(u, "?")[0], statusOf(res), err)
		// An error (a refused CONNECT) is a refusal too.
	}
	if n := f.d.requests.Load() - before; n != 0 {
		t.Fatalf("%d requests through the proxy reached the dashboard", n)
	}
	// The login token is still unused: the proxy never passed it on.
	login(t, f.d, browserless(), f.d.URL())
}

func statusOf(res *http.Response) any {
	if res == nil {
		return nil
	}
	return res.StatusCode
}
