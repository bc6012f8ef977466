// Package e2e drives the docker compose stack end to end, from the host, as a user would:
// the nats CLI to create carts and publish checkouts, mailpit's HTTP API for the email,
// docker compose to restart a service mid-checkout. Its test is behind the e2e build tag,
// so `go test ./...` skips it; `make e2e` builds the images and runs it:
//
//	go test -tags e2e -count=1 -v ./e2e
//
// It reads E2E_COMPOSE (the Compose command, default "docker compose"), E2E_COMPOSE_FILES
// (default "-f docker-compose.yml"), E2E_NATS_CLI (default "go tool nats"), E2E_PROJECT
// (default jetcheckout-e2e) and E2E_TLS (non-empty: NATS over TLS); the image variables
// (JETCHECKOUT_IMAGE, MAILPIT_IMAGE) pass through to Compose.
package e2e
