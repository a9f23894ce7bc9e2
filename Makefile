# Lethe developer commands. `make dev` runs the whole suite on embedded defaults;
# `make test` runs every test. Both install what they need from the project's files.
SHELL := /bin/bash
export PATH := $(CURDIR)/bin:$(PATH)
TOOLS := github.com/bufbuild/buf/cmd/buf \
	google.golang.org/protobuf/cmd/protoc-gen-go \
	google.golang.org/grpc/cmd/protoc-gen-go-grpc \
	github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway \
	github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2

.PHONY: tools generate lint promtool rules
tools: ## Build the pinned code generators (tools/go.mod) into bin/.
	GOWORK=off go -C tools build -o ../bin/ $(TOOLS)
	./scripts/googleapis.sh

# promtool has a module of its own (tools/promtool/go.mod): in tools/go.mod its
# dependencies would raise the code generators' versions and change gen/. remove_all_sd
# leaves out the service-discovery plugins (Kubernetes, clouds), which rule tests do not
# use, and most of the build.
promtool: ## Build the pinned promtool (tools/promtool/go.mod) into bin/.
	GOWORK=off go -C tools/promtool build -tags remove_all_sd -o ../../bin/ github.com/prometheus/prometheus/cmd/promtool

rules: promtool ## Check the Prometheus alerting rules and run their unit tests (deploy/prometheus).
	promtool check rules deploy/prometheus/alerts.yml
	promtool test rules deploy/prometheus/alerts_test.yml

generate: tools ## Regenerate gen/ from proto/.
	rm -rf gen/lethe gen/openapiv2/*.json
	buf generate

lint: tools ## Lint the protos and check them for breaking changes against main.
	buf lint
	buf format --diff --exit-code --exclude-path third_party/googleapis/google
	./scripts/breaking.sh

# PostgreSQL for tests: the server on this machine (trust auth, database test).
LETHE_TEST_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/test?sslmode=disable
export LETHE_TEST_POSTGRES_URL
# Every module in go.work; `go test lethe.dev/...` spans them all.
PKGS := lethe.dev/...

.PHONY: check-generated datamap vet test dev bench
check-generated: generate ## Fail when gen/ is not what the protos generate.
	@git diff --exit-code --stat -- gen || { echo "gen/ is stale: run 'make generate' and commit"; exit 1; }
	@test -z "$$(git status --porcelain --untracked-files=all -- gen)" || { git status --short -- gen; echo "gen/ has uncommitted generated files"; exit 1; }

datamap: ## Fail when a field of a service API has no privacy classification.
	go run lethe.dev/platform/cmd/datamap

vet:
	go vet $(PKGS)

# The long end-to-end tests (crash, topology) append their measured figures here; `make
# test` prints them after the run, since go test hides a passing test's log.
LETHE_TEST_FIGURES ?= $(CURDIR)/test-figures.txt
export LETHE_TEST_FIGURES

# The operator console's browser test (devstack/console_test.go) saves its screenshots here.
LETHE_CONSOLE_ARTIFACTS ?= $(CURDIR)/artifacts/console
export LETHE_CONSOLE_ARTIFACTS

.PHONY: node-deps
node-deps: ## Install the pinned browser-test dependencies (axe-core) from package-lock.json.
	@if [ ! -f node_modules/axe-core/axe.min.js ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then npm ci --no-audit --no-fund; fi

test: lint check-generated datamap vet rules node-deps ## Everything CI checks: lint, generated code, classification, vet, alerting rules, all tests on SQLite and PostgreSQL.
	rm -f $(LETHE_TEST_FIGURES)
	# One package at a time: the end-to-end packages (devstack, devstack/topology) pick free
	# ports and bind them later, and run side by side another package's process could take one.
	go test -p 1 -count=1 -timeout 45m $(PKGS)
	@echo "== Figures from the end-to-end tests"; cat $(LETHE_TEST_FIGURES) 2>/dev/null || echo "(none recorded)"
	@echo "== Operator console screenshots (headless Chromium): $(LETHE_CONSOLE_ARTIFACTS)"; ls $(LETHE_CONSOLE_ARTIFACTS) 2>/dev/null || echo "(none saved)"

# The load test on the multi-process topology (devstack/topology/load_test.go): 10,000
# members, 1,000 erasures and 100 exports of 10,000 events filed at once, then the
# Temporal floor in the same run. Smaller: LETHE_LOAD_MEMBERS, LETHE_LOAD_ERASURES,
# LETHE_LOAD_EXPORTS, LETHE_LOAD_ITEMS; sign-ups at a time: LETHE_LOAD_CONCURRENCY.
.PHONY: load
load: ## Load test on the production topology (Temporal on PostgreSQL), with the Temporal floor.
	LETHE_LOAD=1 go test -count=1 -timeout 90m -run '^TestLoad$$' -v ./devstack/topology/

bench: ## Benchmarks quoted in the READMEs.
	go test -run '^$$' -bench . -benchmem $(PKGS)

dev: ## Run the whole suite on embedded defaults (SQLite, embedded Temporal + Web UI) under ./data.
	go run ./devstack/cmd/lethe-dev
