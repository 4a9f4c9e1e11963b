# tf serve: one gateway for many agents (see README, "A shared gateway").
#
#   docker build -t tf .
#   docker run -d -p 3128:3128 -v tf-home:/var/lib/tf tf
#   docker exec <container> tf agents add ci-runner     # prints its token once
#   docker exec <container> tf ca export > tf-ca.pem    # clients trust it
#
# The build stage compiles a static binary; the runtime stage is
# distroless: CA certificates, a non-root user, no shell. tf needs no git
# binary to serve (the policy repository is read with go-git).

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags=-s -o /out/tf ./cmd/tf
# An empty state directory, so that a new volume is owned by the user tf
# runs as (distroless has no shell to create it).
RUN mkdir -m 0700 /out/home

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tf /usr/local/bin/tf
COPY --from=build --chown=65532:65532 /out/home /var/lib/tf
# TF_HOME holds the CA, the audit log, the agents' token hashes and the
# kill switch: keep it on a volume, owned by the nonroot user (65532).
ENV TF_HOME=/var/lib/tf
VOLUME ["/var/lib/tf"]
USER 65532:65532
EXPOSE 3128
# Off loopback tf serve speaks TLS (an HTTPS proxy) with a certificate from
# its CA; give the names clients use with --tls-name.
ENTRYPOINT ["/usr/local/bin/tf", "serve"]
CMD ["--listen", "0.0.0.0:3128", "--tls"]
