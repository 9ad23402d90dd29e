// Package deploy holds what runs Latchkey outside `go run`: the systemd
// unit (systemd/) and the Helm chart (helm/latchkey/); the Dockerfile,
// compose.yaml and scripts/release.sh are at the repository's top. Its
// tests check them with what this machine has: the release build, the
// unit through systemd-analyze, the chart rendered and its objects read.
package deploy
