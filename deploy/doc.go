// Package deploy holds what runs Latchkey outside `go run`: the systemd
// unit (systemd/), the Helm chart (helm/latchkey/) and a highly available
// PostgreSQL for tests (ha/cluster.sh: etcd and three Patroni nodes); the
// Dockerfile, compose.yaml and scripts/release.sh are at the repository's
// top. Its tests check them with what this machine has: the release
// build, the unit through systemd-analyze, the chart rendered and its
// objects read. The HA cluster is exercised with Latchkey on it by
// cmd/latchkey's TestHAFailoverUnderLoad.
package deploy
