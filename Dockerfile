# syntax=docker/dockerfile:1
#
# AppFence as a container image: a static binary FROM scratch, run as an
# unprivileged user, with the built-in configuration listening on the
# container's addresses (deploy/docker/appfence.toml).
#
#   docker build -t appfence:dev .
#   docker run -d --name appfence -p 53:5053/udp -p 53:5053/tcp -p 127.0.0.1:9153:9153 appfence:dev
#
# The only image downloaded is the Go toolchain's (golang, at the version of
# go.mod); the final image has no base: the binary, the CA certificates for
# DoT/DoH upstreams, the configuration, and an empty cache folder.
# docs/operations.md#container-image explains the choices.

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/appfence ./cmd/appfence \
    && /out/appfence check -config deploy/docker/appfence.toml \
    && mkdir -p /out/cache

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/appfence /appfence
COPY deploy/docker/appfence.toml /etc/appfence/appfence.toml
COPY --from=build --chown=65532:65532 /out/cache /var/cache/appfence
# No user database in scratch: a numeric user and group, not root.
USER 65532:65532
EXPOSE 5053/udp 5053/tcp 9153/tcp
STOPSIGNAL SIGTERM
# `appfence healthcheck` asks /readyz and sends a DNS message to the first
# listener, both on loopback: the image has no shell, curl or dig.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/appfence", "healthcheck", "-config", "/etc/appfence/appfence.toml"]
ENTRYPOINT ["/appfence"]
CMD ["serve", "-config", "/etc/appfence/appfence.toml"]
