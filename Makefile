# jetcheckout: `make run` runs it, `make test` tests it. Only Go is needed: the nats CLI and
# nats-server come from the modules pinned in go.mod.
GO ?= go
# The race detector needs cgo and a C compiler; without one the tests still run, without it.
RACE := $(shell command -v gcc >/dev/null 2>&1 && echo -race)

.PHONY: first-build-note clean-volumes migrate run test bench chromium fuzz hostile chaos chaos-short chaos-cluster chaos-cluster-short upgrade-image upgrade-test upgrade-test-short tools events-doc fmt vet tidy build images secrets certs nats-config up down ps logs e2e compose-cli nats-cli up-cluster down-cluster e2e-cluster

## run: the whole checkout on an embedded JetStream server (data in ./data)
run: first-build-note tools build
	./bin/jetcheckout run

# The first build compiles nats-server (inside jetcheckout) and the nats CLI from source and
# prints nothing for minutes: say so before it starts, once (no bin/jetcheckout yet).
first-build-note:
	@[ -x bin/jetcheckout ] || printf '%s\n' "first run: building the nats CLI (go tool nats) and bin/jetcheckout, nats-server inside," \
		"from the modules go.mod pins: a few minutes this once (download and compile), seconds after that."

## test: formatting, vet, and every test with the race detector
test: vet
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	@[ -n "$(RACE)" ] || echo "no C compiler: running the tests without the race detector"
	CGO_ENABLED=$(if $(RACE),1,0) $(GO) test $(RACE) -count=1 -timeout 15m ./...
	@# The disk-full test restarts JetStream in-process, which races inside nats-server: it
	@# skips under the race detector and runs here without it.
	$(if $(RACE),CGO_ENABLED=0 $(GO) test -count=1 -timeout 5m -run '^TestDiskFullRecovers$$' ./internal/app)
	@$(CHROMIUM_NOTE)
	@$(DISKFULL_NOTE)

# The run UI's browser test (internal/httpapi) needs chromium; without it the test skips.
CHROMIUM_NOTE = if command -v chromium >/dev/null 2>&1 || [ -n "$$CHROMIUM" ]; then \
	echo "browser test: chromium found; screenshots in .artifacts/browser/"; \
	else echo "browser test SKIPPED: no chromium (make chromium, or apt-get install -y chromium)"; fi

# The disk-full tests (internal/app TestDiskFullRecovers, TestNATSServerRecoversDiskFull) mount a
# small tmpfs: root only.
DISKFULL_NOTE = if [ "$$(id -u)" = 0 ]; then echo "disk-full tests: run as root (they skip, saying why, only if mount fails)"; \
	else echo "disk-full tests SKIPPED: they mount a tmpfs, which needs root"; fi

## chromium: install Debian's chromium for the browser test (needs apt-get and root)
chromium:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
		{ apt-get update -qq && apt-get install -y -qq chromium; } || echo "no apt-get here: install chromium yourself"; }

vet: tidy
	$(GO) vet ./...

# go.mod and go.sum are what the code needs, no more: `go mod tidy` must leave them unchanged.
tidy:
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }

## bench: the whole system in-process under load: the raw JetStream ceiling with its atomic batch
## curve, then a sweep for the highest rate held with p99 < 100 ms (docs/PERFORMANCE.md).
## BENCH_FLAGS changes the load.
BENCH_FLAGS ?= -sweep -sweep-from 25 -duration 15s -batch-curve
bench:
	CGO_ENABLED=0 $(GO) build -o bin/loadgen ./cmd/loadgen
	./bin/loadgen $(BENCH_FLAGS) -json bin/bench.json

## fuzz: each fuzz target for a few seconds (FUZZTIME), on top of the committed seed corpora.
## A count of executions, not a duration: Go 1.26's fuzzer can fail a duration-bounded run with
## "context deadline exceeded" when its deadline races a busy worker (go.dev/issue/75804,
## fixed in Go 1.27); a count has no deadline to race.
FUZZTIME ?= 50000x
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./events
	$(GO) test -run '^$$' -fuzz '^FuzzRequest$$' -fuzztime $(FUZZTIME) ./events
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeStrict$$' -fuzztime $(FUZZTIME) ./events
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./internal/microx
	$(GO) test -run '^$$' -fuzz '^FuzzBodies$$' -fuzztime $(FUZZTIME) ./internal/httpapi

## build: the binary in ./bin
build:
	CGO_ENABLED=0 $(GO) build -o bin/jetcheckout ./cmd/jetcheckout

## tools: build the pinned nats CLI once, so `go tool nats` answers at once afterwards
tools:
	@$(GO) tool nats --version >/dev/null

## events-doc: print the event catalog (the README's table is checked against it)
events-doc:
	@$(GO) run ./cmd/jetcheckout events

# ---- Docker: the compose stack (docs/OPERATIONS.md, "The compose stack") ----------------
# Nothing is pulled: every image is FROM scratch with binaries built here from the modules
# go.mod and tools/ pin. The jetcheckout image runs NATS too (`jetcheckout nats-server`); the
# compose file defaults to the official mailpit image, and these targets point it at the local build.

PROJECT ?= jetcheckout
JETCHECKOUT_IMAGE ?= jetcheckout:local
MAILPIT_VERSION = $(shell cd tools/mailpit && $(GO) list -m -f '{{.Version}}' github.com/axllent/mailpit)
MAILPIT_IMAGE ?= jetcheckout/mailpit:$(MAILPIT_VERSION:v%=%)-local
IMAGE_CONTEXT := bin/docker
SECRETS := deploy/secrets
# TLS=1: NATS over TLS (deploy/compose.tls.yml, certificates from `make certs`).
TLS ?=

# The Compose front end: the docker compose plugin, else docker-compose (v2, or the old
# Python 1.29), else the Compose CLI built from tools/compose. Looked up once, and only by
# the targets that use it.
COMPOSE_FOUND = $(eval COMPOSE_FOUND := $$(shell if docker compose version >/dev/null 2>&1; then echo docker compose; \
	elif docker-compose version >/dev/null 2>&1; then echo docker-compose; fi))$(COMPOSE_FOUND)
COMPOSE ?= $(or $(COMPOSE_FOUND),bin/docker-compose)
COMPOSE_FILES = -f docker-compose.yml $(if $(TLS),-f deploy/compose.tls.yml)
COMPOSE_ENV = JETCHECKOUT_IMAGE=$(JETCHECKOUT_IMAGE) MAILPIT_IMAGE=$(MAILPIT_IMAGE) PROMETHEUS_IMAGE=$(PROMETHEUS_IMAGE)

## images: jetcheckout (every service and nats-server, by command), mailpit and prometheus, FROM scratch
images:
	@test -f /etc/ssl/certs/ca-certificates.crt || { echo "no /etc/ssl/certs/ca-certificates.crt on this host"; exit 1; }
	rm -rf $(IMAGE_CONTEXT) && mkdir -p $(IMAGE_CONTEXT)/etc/ssl/certs $(IMAGE_CONTEXT)/data $(IMAGE_CONTEXT)/tmp
	cp deploy/image/passwd deploy/image/group $(IMAGE_CONTEXT)/etc/
	cp /etc/ssl/certs/ca-certificates.crt $(IMAGE_CONTEXT)/etc/ssl/certs/
	chmod 1777 $(IMAGE_CONTEXT)/tmp
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags=-s -o $(IMAGE_CONTEXT)/jetcheckout ./cmd/jetcheckout
	cd tools/mailpit && CGO_ENABLED=0 $(GO) build -trimpath \
		-ldflags="-s -X github.com/axllent/mailpit/config.Version=$(MAILPIT_VERSION)" \
		-o ../../$(IMAGE_CONTEXT)/mailpit github.com/axllent/mailpit
	docker build -q -f deploy/Dockerfile --target jetcheckout -t $(JETCHECKOUT_IMAGE) $(IMAGE_CONTEXT)
	docker build -q -f deploy/Dockerfile --target mailpit -t $(MAILPIT_IMAGE) $(IMAGE_CONTEXT)
	$(PROMETHEUS_BUILD)

# ---- Prometheus: scrapes every container's /metrics (deploy/prometheus) -------------------
# Built from the module tools/prometheus pins, like mailpit: `make images` runs
# PROMETHEUS_BUILD. Tag remove_all_sd leaves out every service discovery but files and HTTP
# (the stack's targets are files), and with them the cloud SDKs: minutes of compiling and
# gigabytes of memory for the first build. The UI's assets are not in the module (no
# builtinassets): the HTTP API works, the pages do not.
PROMETHEUS_VERSION = $(shell cd tools/prometheus && $(GO) list -m -f '{{.Version}}' github.com/prometheus/prometheus)
# The module v0.316.0 is Prometheus 3.16.0.
PROMETHEUS_RELEASE = $(shell echo '$(PROMETHEUS_VERSION)' | sed -E 's/^v0\.([0-9]+)([0-9]{2})\./\1.\2./; s/\.0([0-9])\./.\1./')
PROMETHEUS_IMAGE ?= jetcheckout/prometheus:$(PROMETHEUS_RELEASE)-local
define PROMETHEUS_BUILD
cd tools/prometheus && CGO_ENABLED=0 $(GO) build -trimpath -tags remove_all_sd \
	-ldflags="-s -X github.com/prometheus/common/version.Version=$(PROMETHEUS_RELEASE)" \
	-o ../../$(IMAGE_CONTEXT)/prometheus github.com/prometheus/prometheus/cmd/prometheus
docker build -q -f deploy/Dockerfile --target prometheus -t $(PROMETHEUS_IMAGE) $(IMAGE_CONTEXT)
endef

## secrets: a random password per NATS user and a signing key per service in deploy/secrets/*.env (git-ignored; kept once made)
secrets:
	@$(GO) run ./cmd/jetcheckout nats-secrets $(SECRETS)

## certs: a development CA and certificates for NATS TLS in deploy/secrets/tls
certs:
	@$(GO) run ./cmd/jetcheckout nats-certs $(SECRETS)/tls

## nats-config: regenerate deploy/nats/auth.conf (the NATS users) from events/
nats-config:
	$(GO) run ./cmd/jetcheckout nats-config > deploy/nats/auth.conf

compose-cli:
	@if [ "$(COMPOSE)" = bin/docker-compose ] && [ ! -x bin/docker-compose ]; then \
		echo "neither docker compose nor docker-compose works: building the Compose CLI from tools/compose"; \
		cd tools/compose && CGO_ENABLED=0 $(GO) build -trimpath \
			-ldflags="-X github.com/docker/compose/v5/internal.Version=$$($(GO) list -m -f '{{.Version}}' github.com/docker/compose/v5)" \
			-o ../../bin/docker-compose github.com/docker/compose/v5/cmd; \
	fi

nats-cli:
	@$(GO) build -o bin/nats github.com/nats-io/natscli/nats

## up: build the images, start the stack (project $(PROJECT)) and wait until all of it is healthy
up: images secrets compose-cli $(if $(TLS),certs)
	$(COMPOSE_ENV) $(COMPOSE) -p $(PROJECT) $(COMPOSE_FILES) up -d
	@echo "waiting for every container to be healthy..."
	@deploy/wait-healthy.sh $(PROJECT) 180
	@$(call up-note,$(COMPOSE) -p $(PROJECT) $(COMPOSE_FILES))

# What `make up` says when the stack of Compose command $(1) is healthy: where it answers (the
# ports it got), and that the nats CLI needs the operator's credentials (without them NATS
# answers only "Authorization Violation").
up-note = port() { $(COMPOSE_ENV) $(1) port $$1 $$2 2>/dev/null | tail -n 1; }; \
	printf '%s\n' "up: the run UI and API at http://$$(port api 8080)/, mail at http://$$(port mailpit 8025)/api/v1/messages" \
	"Prometheus's API at http://$$(port prometheus 9090)/api/v1/targets (docs/OPERATIONS.md)" \
	"The nats CLI needs the operator's credentials, in $(SECRETS)/operator.env (without them NATS says \"Authorization Violation\"). In your shell:" \
	"  set -a; . $(SECRETS)/operator.env; set +a; export NATS_URL=$(if $(TLS),tls,nats)://$$(port nats 4222)$(if $(TLS), NATS_CA=$(SECRETS)/tls/ca.pem)" \
	"  go tool nats sub 'checkout.>'"

## migrate: once, after upgrading a stack whose CHECKOUT stream predates the timer streams (the
## setup container then says so and the services wait): migrates it with the operator's credentials
migrate: secrets
	set -a; . $(SECRETS)/operator.env; set +a; NATS_URL=nats://127.0.0.1:$${NATS_PORT:-4222} $(GO) run ./cmd/jetcheckout setup -once -migrate

## down: stop the stack (SIGTERM; in-flight work finishes); its volumes stay for the next `make up`
## (VOLUMES=1: removes them too: the data is gone)
down: secrets compose-cli
	@$(call compose-down,$(COMPOSE) -p $(PROJECT) $(COMPOSE_FILES),$(PROJECT))

## clean-volumes: stop the stack and remove its volumes (make down VOLUMES=1)
clean-volumes:
	@$(MAKE) --no-print-directory down VOLUMES=1

# compose-down stops project $(2) with the Compose command $(1), if anything of it is there:
# Compose 1.29 says "Network <project>_checkout not found." of a stack that is down already.
# VOLUMES=1 then removes the project's volumes (by Compose's label, which works when it is down too).
compose-down = if [ -n "$$(docker ps -aq --filter label=com.docker.compose.project=$(2))" ] || \
		docker network inspect $(2)_checkout >/dev/null 2>&1; then \
		echo "$(1) down"; $(COMPOSE_ENV) $(1) down || exit 1; \
	else echo "$(2) is not running"; fi; \
	$(if $(VOLUMES),vols=$$(docker volume ls -q --filter label=com.docker.compose.project=$(2)); \
	if [ -n "$$vols" ]; then echo "removing the volumes of $(2):" $$vols; docker volume rm $$vols >/dev/null; \
	else echo "$(2) has no volumes"; fi,true)

ps: secrets compose-cli
	@$(COMPOSE_ENV) $(COMPOSE) -p $(PROJECT) $(COMPOSE_FILES) ps

logs: secrets compose-cli
	@$(COMPOSE_ENV) $(COMPOSE) -p $(PROJECT) $(COMPOSE_FILES) logs --tail=50

## e2e: images, then the whole stack on its own project: checkouts through the nats CLI, email in mailpit, a restart, teardown
e2e: images secrets compose-cli nats-cli $(if $(TLS),certs)
	E2E_COMPOSE="$(COMPOSE)" E2E_COMPOSE_FILES="$(COMPOSE_FILES)" E2E_NATS_CLI=bin/nats E2E_TLS=$(TLS) \
		$(COMPOSE_ENV) $(GO) test -tags e2e -count=1 -v -timeout 20m -run '^TestStack$$' ./e2e

# ---- Jaeger: the compose stacks' traces (docs/OPERATIONS.md, "Traces") ----------------
# Jaeger all-in-one built from the module tools/jaeger pins, FROM scratch like the others,
# into the image context `images` staged (with jetcheckout, its health probe). Its first build
# compiles Jaeger from source: about 13 minutes on a 2-core machine, cached after that.
JAEGER_VERSION = $(shell cd tools/jaeger && $(GO) list -m -f '{{.Version}}' github.com/jaegertracing/jaeger)
JAEGER_IMAGE ?= jetcheckout/jaeger:$(JAEGER_VERSION:v%=%)-local
COMPOSE_ENV += JAEGER_IMAGE=$(JAEGER_IMAGE)

## jaeger-image: the jaeger image (after images: it shares their build context)
jaeger-image: images
	@echo "jaeger $(JAEGER_VERSION) from tools/jaeger: its first build takes about 13 minutes, seconds after that"
	cd tools/jaeger && CGO_ENABLED=0 $(GO) build -trimpath -ldflags=-s -o ../../$(IMAGE_CONTEXT)/jaeger github.com/jaegertracing/jaeger/cmd/jaeger
	docker build -q -f deploy/Dockerfile --target jaeger -t $(JAEGER_IMAGE) $(IMAGE_CONTEXT)

# Every target that starts a compose stack needs the image.
up e2e up-cluster e2e-cluster chaos-cluster upgrade-test: jaeger-image
.PHONY: jaeger-image

# ---- The cluster: three NATS nodes, R3 streams, two replicas of every service ----------
# The same compose file with the variables of deploy/cluster.env (profile cluster) and
# deploy/compose.cluster.yml (the volumes of nodes 2 and 3, which the single-node stack does
# not make); its own project, so its volumes never mix with the single-node stack's (both
# publish 4222 on the host's loopback: run one at a time).
CLUSTER_PROJECT ?= jetcheckout-cluster
CLUSTER_FILES = -f docker-compose.yml -f deploy/compose.cluster.yml
CLUSTER = $(COMPOSE) --env-file deploy/cluster.env -p $(CLUSTER_PROJECT) $(CLUSTER_FILES)

## up-cluster: the stack on a three-node JetStream cluster, two replicas per service
up-cluster: images secrets compose-cli
	$(COMPOSE_ENV) $(CLUSTER) up -d
	@echo "waiting for every container to be healthy..."
	@deploy/wait-healthy.sh $(CLUSTER_PROJECT) 300
	@$(call up-note,$(CLUSTER))

## down-cluster: stop the cluster stack; its volumes stay (VOLUMES=1: removes them too)
down-cluster: secrets compose-cli
	@$(call compose-down,$(CLUSTER),$(CLUSTER_PROJECT))

## e2e-cluster: checkouts through the cluster while a NATS node stops and a service replica is killed
e2e-cluster: images secrets compose-cli nats-cli
	E2E_COMPOSE="$(COMPOSE) --env-file deploy/cluster.env" E2E_COMPOSE_FILES="$(CLUSTER_FILES)" E2E_PROJECT=jetcheckout-e2e-cluster E2E_CLUSTER=1 \
		E2E_NATS_CLI=bin/nats $(COMPOSE_ENV) $(GO) test -tags e2e -count=1 -v -timeout 20m -run '^TestCluster$$' ./e2e

## hostile: only the hostile-input corpus against the whole system (make test runs it too)
hostile:
	CGO_ENABLED=$(if $(RACE),1,0) $(GO) test $(RACE) -count=1 -run TestHostileInput ./internal/app

## chaos: every service and nats-server as processes, killed at random under a load mix, then
## reconciled (docs/CHAOS.md). CHAOS_SEED=n replays a run's faults.
CHAOS_CHECKOUTS ?= 10000
CHAOS_KILL_EVERY ?= 2s
chaos:
	CHAOS_CHECKOUTS=$(CHAOS_CHECKOUTS) CHAOS_KILL_EVERY=$(CHAOS_KILL_EVERY) \
		$(GO) test -tags chaos -count=1 -v -timeout 8h -run '^TestChaos$$' ./internal/chaos

## chaos-short: the bounded chaos run CI does (about three minutes: a bounced confirmation waits out its 2-minute deadline before its re-drive)
chaos-short:
	CHAOS_CHECKOUTS=120 CHAOS_KILL_EVERY=2s CHAOS_CONCURRENCY=24 \
		$(GO) test -tags chaos -count=1 -v -timeout 15m -run '^TestChaos$$' ./internal/chaos

## chaos-cluster: the chaos load and reconciliation against the compose cluster (project
## jetcheckout-chaos-cluster, torn down at the end) while NATS nodes and service containers are
## killed, stopped, paused and cut off the network. 150 checkouts unless CHAOS_CHECKOUTS is given.
chaos-cluster: images secrets compose-cli
	CHAOS_COMPOSE="$(COMPOSE) --env-file deploy/cluster.env" CHAOS_PROJECT=jetcheckout-chaos-cluster \
		CHAOS_CHECKOUTS=$(if $(filter command line environment,$(origin CHAOS_CHECKOUTS)),$(CHAOS_CHECKOUTS),$(CHAOS_CLUSTER_CHECKOUTS)) \
		$(COMPOSE_ENV) $(GO) test -tags chaos -count=1 -v -timeout 30m -run '^TestChaosCluster$$' ./internal/chaos
CHAOS_CLUSTER_CHECKOUTS = 150

## chaos-cluster-short: the bounded cluster run CI does (60 checkouts, about two minutes)
chaos-cluster-short: CHAOS_CLUSTER_CHECKOUTS = 60
chaos-cluster-short: chaos-cluster

# ---- A rolling upgrade: the cluster on the previous release, replaced container by container ----
# UPGRADE_FROM is the release the cluster starts on: its git tag, or where the clone lacks the
# tag, the commit deploy/releases records for it. Its image is built from that revision's own
# Makefile and Dockerfile, in a temporary copy of the tree (git archive), once: kept afterwards.
UPGRADE_FROM ?= v0.1.0
UPGRADE_IMAGE = jetcheckout:$(UPGRADE_FROM)
UPGRADE_REV = $(shell git rev-parse -q --verify 'refs/tags/$(UPGRADE_FROM)^{commit}' 2>/dev/null || \
	awk '$$1 == "$(UPGRADE_FROM)" { print $$2 }' deploy/releases)

## upgrade-image: the jetcheckout image of release $(UPGRADE_FROM), built from its revision (reused once made)
upgrade-image:
	@rev='$(UPGRADE_REV)'; [ -n "$$rev" ] && git cat-file -e "$$rev^{commit}" 2>/dev/null || \
		{ echo "release $(UPGRADE_FROM): no such tag, and deploy/releases names no commit of it that this clone has"; exit 1; }
	@if docker image inspect $(UPGRADE_IMAGE) >/dev/null 2>&1; then echo "$(UPGRADE_IMAGE): built before, reused"; else \
		tree=$$(mktemp -d) && echo "building $(UPGRADE_IMAGE) from $(UPGRADE_REV) in $$tree" && \
		git archive $(UPGRADE_REV) | tar -x -C $$tree && \
		$(MAKE) --no-print-directory -C $$tree images JETCHECKOUT_IMAGE=$(UPGRADE_IMAGE) MAILPIT_IMAGE=jetcheckout/mailpit:$(UPGRADE_FROM)-local; \
		status=$$?; rm -rf $$tree; exit $$status; fi

## upgrade-test: a rolling upgrade under the chaos load, then reconciled: the cluster (project
## jetcheckout-upgrade, torn down at the end) starts on release $(UPGRADE_FROM)'s image, and
## every container is replaced with this build one at a time, writers held at the old schema
## version (SCHEMA_WRITE_VERSION=1), then again with the hold lifted; 0 violations, 0 dead
## letters. 400 checkouts unless CHAOS_CHECKOUTS is given; UPGRADE_HOLD= upgrades without the hold.
upgrade-test: images upgrade-image secrets compose-cli
	CHAOS_COMPOSE="$(COMPOSE) --env-file deploy/cluster.env" CHAOS_PROJECT=jetcheckout-upgrade UPGRADE_FROM_REV=$(UPGRADE_REV) UPGRADE_FROM_IMAGE=$(UPGRADE_IMAGE) \
		CHAOS_CHECKOUTS=$(if $(filter command line environment,$(origin CHAOS_CHECKOUTS)),$(CHAOS_CHECKOUTS),$(UPGRADE_CHECKOUTS)) \
		$(COMPOSE_ENV) $(GO) test -tags chaos -count=1 -v -timeout 60m -run '^TestUpgradeCluster$$' ./internal/chaos
UPGRADE_CHECKOUTS = 400

## upgrade-test-short: the bounded upgrade CI runs (120 checkouts, every container still replaced twice)
upgrade-test-short: UPGRADE_CHECKOUTS = 120
upgrade-test-short: upgrade-test
