# Lethe developer commands. `make dev` runs the whole suite on embedded defaults;
# `make test` runs every test. Both install what they need from the project's files.
SHELL := /bin/bash
export PATH := $(CURDIR)/bin:$(PATH)
TOOLS := github.com/bufbuild/buf/cmd/buf \
	google.golang.org/protobuf/cmd/protoc-gen-go \
	google.golang.org/grpc/cmd/protoc-gen-go-grpc \
	github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway \
	github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2

.PHONY: tools generate lint
tools: ## Build the pinned code generators (tools/go.mod) into bin/.
	GOWORK=off go -C tools build -o ../bin/ $(TOOLS)
	./scripts/googleapis.sh

generate: tools ## Regenerate gen/ from proto/.
	rm -rf gen/lethe gen/openapiv2/*.json
	buf generate

lint: tools ## Lint the protos.
	buf lint
	buf format --diff --exit-code proto
