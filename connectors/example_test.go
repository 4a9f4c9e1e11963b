package connectors_test

import (
	"fmt"
	"net/http/httptest"
	"strings"

	"github.com/tameflare/tf/connectors"
	"github.com/tameflare/tf/rules"
)

// Vault is the custom connector of the README.
type Vault struct{}

var _ connectors.Connector = (*Vault)(nil)

func (*Vault) Name() string             { return "vault" }
func (*Vault) Handles(host string) bool { return host == "vault.internal.example" }

func (*Vault) Classify(r *connectors.Request) ([]rules.Action, error) {
	path := strings.TrimPrefix(r.HTTP.URL.Path, "/v1/")
	verb := map[string]string{"GET": "read", "PUT": "write", "POST": "write", "DELETE": "delete"}[r.HTTP.Method]
	if verb == "" {
		return nil, fmt.Errorf("vault: method %s is not supported", r.HTTP.Method)
	}
	return []rules.Action{{
		Type:     "vault.secret." + verb,
		Resource: map[string]string{"path": path},
	}}, nil
}

func Example_customConnector() {
	reg, err := connectors.NewRegistry(connectors.Options{})
	if err != nil {
		panic(err)
	}
	reg.Register(&Vault{})

	req := httptest.NewRequest("PUT", "https://vault.internal.example/v1/kv/db", nil)
	acts, err := reg.Classify(&connectors.Request{HTTP: req, Scheme: "https"})
	if err != nil {
		panic(err)
	}
	fmt.Println(acts[0].Connector, acts[0].Type, acts[0].Resource["path"], acts[0].Request.Port)
	// Output: vault vault.secret.write kv/db 443
}
