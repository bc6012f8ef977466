# jetcheckout: `make run` runs it, `make test` tests it. Only Go is needed: the nats CLI and
# nats-server come from the modules pinned in go.mod.
GO ?= go
# The race detector needs cgo and a C compiler; without one the tests still run, without it.
RACE := $(shell command -v gcc >/dev/null 2>&1 && echo -race)

.PHONY: run test tools events-doc fmt vet build

## run: the whole checkout on an embedded JetStream server (data in ./data)
run: tools build
	./bin/jetcheckout run

## test: formatting, vet, and every test with the race detector
test: vet
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	@[ -n "$(RACE)" ] || echo "no C compiler: running the tests without the race detector"
	CGO_ENABLED=$(if $(RACE),1,0) $(GO) test $(RACE) -count=1 -timeout 15m ./...

vet:
	$(GO) vet ./...

## build: the binary in ./bin
build:
	CGO_ENABLED=0 $(GO) build -o bin/jetcheckout ./cmd/jetcheckout

## tools: build the pinned nats CLI once, so `go tool nats` answers at once afterwards
tools:
	@$(GO) tool nats --version >/dev/null

## events-doc: print the event catalog (the README's table is checked against it)
events-doc:
	@$(GO) run ./cmd/jetcheckout events
