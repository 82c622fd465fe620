// Package deploy holds what operations install next to AppFence: the
// Grafana dashboard (grafana/appfence.json), the Prometheus alert rules
// with their unit tests (prometheus/alerts.yml, alerts_test.yml), an
// nftables ruleset that makes every device use AppFence for DNS
// (nftables/appfence.nft), the systemd unit (systemd/appfence.service), the
// Kubernetes manifests (kubernetes/appfence.yaml, servicemonitor.yaml) and
// the container image's configuration (docker/appfence.toml, used by the
// Dockerfile at the repository root).
// It has no code; its tests check the files with promtool, nft and
// systemd-analyze, decode the manifests strictly with k8s.io/api, lint the
// Dockerfile, and cmd/appfence's tests check that every metric they use
// is exported by a running server. docs/operations.md explains each panel
// and alert, docs/bypass.md the ruleset, docs/security.md the unit's sandbox.
package deploy
