# tf's everyday commands. `just` lists them.

default:
    @just --list

# Build the tf binary into ./bin/tf.
build:
    go build -o bin/tf ./cmd/tf

# The whole test suite, installing what it needs (what CI runs).
test *ARGS:
    scripts/test {{ARGS}}

# Benchmarks of the hot paths.
bench:
    go test -run '^$' -bench . -benchmem ./...

# Run each fuzz target for a while (FUZZTIME=1m just fuzz).
fuzz:
    #!/usr/bin/env bash
    set -euo pipefail
    for pkg in $(go list ./...); do
      for f in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
        echo "== $pkg $f"
        go test -run '^$' -fuzz "^$f\$" -fuzztime "${FUZZTIME:-20s}" "$pkg"
      done
    done

# Static checks.
lint:
    gofmt -l . | (! grep .)
    go vet ./...

# Regenerate the committed JSON Schemas from the rules types.
schema:
    cd schema && go run gen.go
