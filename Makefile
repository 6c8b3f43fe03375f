# amirotate — run `make help` for the targets.

SHELL := /bin/bash
GO ?= go
# A Lambda per directory of functions/ but internal/ (their shared code);
# ec2x's TestSteps_OneFunctionDirectoryEach holds the directories to ec2x.Steps.
FUNCTIONS := $(filter-out internal,$(patsubst functions/%/,%,$(sort $(wildcard functions/*/))))
DIST := dist
# The bootstraps built for this machine, whose init the benchmark times.
HOST_DIST := $(DIST)/host
BIN := bin/amirotate
NODE_LOCAL := statemachine/local
IAM_EVALUATOR := internal/iamsim/evaluator
# Node.js 24 LTS from npm (the package node, installed by setup) comes first
# on PATH for everything make runs: the CDK CLI and app, the local Step
# Functions runner, the IAM evaluator.
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)
export AWS_EC2_METADATA_DISABLED := true

.PHONY: help setup build bootstraps-host run test lint synth deploy bench bench-large fuzz clean

help: ## Show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

setup: node_modules/.installed $(NODE_LOCAL)/node_modules/.installed $(IAM_EVALUATOR)/node_modules/.installed /usr/bin/aws ## Install what runs and tests need: npm packages, the AWS CLI v2

# The conformance tests drive the simulator with Debian's AWS CLI v2 as well
# as the v1 that comes with the machine's Python.
/usr/bin/aws:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends awscli; \
	else echo "the tests need Debian's AWS CLI v2: sudo apt-get install awscli"; exit 1; fi

# After the root packages: npm then runs on their Node 24.
$(NODE_LOCAL)/node_modules/.installed: $(NODE_LOCAL)/package-lock.json | node_modules/.installed
	npm ci --prefix $(NODE_LOCAL) --no-audit --no-fund
	@touch $@

# The IAM evaluator the local EC2 enforces the synthesized roles with.
$(IAM_EVALUATOR)/node_modules/.installed: $(IAM_EVALUATOR)/package-lock.json | node_modules/.installed
	npm ci --prefix $(IAM_EVALUATOR) --no-audit --no-fund
	@touch $@

# The CDK CLI ships Go templates; a go.mod in node_modules keeps them out of ./...
node_modules/.installed: package-lock.json
	npm ci --no-audit --no-fund
	@echo 'module ignore/node_modules' > node_modules/go.mod
	@touch $@

$(BIN): $(shell find cmd internal statemachine \( -name '*.go' -o -name '*.json' \) -not -path '*/node_modules/*' 2>/dev/null) go.mod
	$(GO) build -trimpath -o $(BIN) ./cmd/amirotate

build: $(BIN) ## Build the CLI and the Lambda bootstraps (linux/arm64), printing each size
	@for f in $(FUNCTIONS); do \
	  GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build -tags lambda.norpc -trimpath -ldflags='-s -w' \
	    -o $(DIST)/$$f/bootstrap ./functions/$$f || exit 1; \
	  awk -v f=$$f -v s=$$(stat -c %s $(DIST)/$$f/bootstrap) 'BEGIN{printf "  %-10s %6.2f MB\n", f, s/1048576}'; \
	done

run: setup $(BIN) ## The demo: embedded local EC2, a seeded fleet, two rotations a day apart
	./$(BIN) demo

# The end-to-end tests run without the race detector: they drive the same
# packages the first line tests with it, and under it the 1,000-instance
# run takes minutes longer.
test: setup ## Run every test (race detector on, except end to end)
	$(GO) vet ./...
	$(GO) test -race -timeout 20m $$($(GO) list ./... | grep -v '/internal/e2e$$')
	$(GO) test -timeout 20m ./internal/e2e

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

synth: setup build ## Synthesize the CloudFormation template (cdk.out/)
	npx aws-cdk synth --quiet

deploy: setup build ## Deploy to the account of your AWS credentials
	npx aws-cdk deploy

bootstraps-host: ## Build the Lambda bootstraps for this machine (the benchmark times their init)
	@for f in $(FUNCTIONS); do \
	  CGO_ENABLED=0 $(GO) build -tags lambda.norpc -trimpath -ldflags='-s -w' -o $(HOST_DIST)/$$f/bootstrap ./functions/$$f || exit 1; \
	done

bench: setup $(BIN) bootstraps-host ## Fleet benchmark: 1,000 instances x 3 regions through the real state machine
	./$(BIN) bench --instances 1000 --regions 3 --bootstraps $(HOST_DIST) --json bench.json

bench-large: setup $(BIN) bootstraps-host ## The same at 10,000 instances x 3 regions (not in CI; see Performance)
	./$(BIN) bench --instances 10000 --regions 3 --bootstraps $(HOST_DIST) --json bench-large.json

fuzz: ## Run each fuzz target for 20 s
	@for t in FuzzDecodePolicy FuzzParseInput FuzzImageName; do \
	  $(GO) test ./internal/rotation -run '^$$' -fuzz "^$$t$$" -fuzztime 20s || exit 1; done
	$(GO) test ./internal/ec2sim -run '^$$' -fuzz '^FuzzRequest$$' -fuzztime 20s -fuzzminimizetime 1x

clean: ## Remove build outputs
	rm -rf bin $(DIST) cdk.out bench.json bench-large.json
