# Editor integrations: VS Code extension, Neovim plugin, GoLand files.
# Included from the top Makefile (`include extensions/editors.mk`); every
# variable is prefixed EDITORS_ so nothing clashes.
#
#   make editors-deps   npm ci for the VS Code extension; Neovim from apt if missing
#   make test-editors   build kloop to a temp path and run every editor test
#                       (with -race unless RACE=0; a race report of any kloop
#                       process the suites start fails them)
#   make vsix           package extensions/vscode/kloop.vsix

# Keep the including Makefile's default goal: these targets run only when named.
EDITORS_SAVED_DEFAULT_GOAL := $(.DEFAULT_GOAL)

EDITORS_DIR  := $(abspath $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST)))))
EDITORS_ROOT := $(abspath $(EDITORS_DIR)/..)
EDITORS_VSCODE := $(EDITORS_DIR)/vscode
EDITORS_NEOVIM := $(EDITORS_DIR)/neovim
EDITORS_GOLAND := $(EDITORS_DIR)/goland
EDITORS_TMP ?= $(or $(TMPDIR),/tmp)/kloop-editors
EDITORS_KLOOP_BIN ?= $(EDITORS_TMP)/kloop
EDITORS_NVIM ?= nvim
EDITORS_NPM ?= npm
EDITORS_GO ?= go
# 1 builds the editors' kloop with -race; the top Makefile's RACE (on by
# default, so `make test` checks the daemon the editors talk to).
EDITORS_RACE ?= $(or $(RACE),1)
# The node_modules stamp npm ci writes; newer than the lock file means installed.
EDITORS_NODE_STAMP := $(EDITORS_VSCODE)/node_modules/.package-lock.json

.PHONY: editors-deps test-editors vsix editors-kloop test-editors-vscode test-editors-neovim test-editors-goland

editors-deps: $(EDITORS_NODE_STAMP)
	@command -v $(EDITORS_NVIM) >/dev/null 2>&1 || { \
	  echo "editors: installing neovim (Debian package)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends neovim \
	  || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends neovim; }; }

$(EDITORS_NODE_STAMP): $(EDITORS_VSCODE)/package-lock.json $(EDITORS_VSCODE)/package.json
	cd $(EDITORS_VSCODE) && $(EDITORS_NPM) ci --no-audit --no-fund
	@touch $@

# Always rebuilt: the tests must run against the tree's kloop.
editors-kloop:
	@mkdir -p $(dir $(EDITORS_KLOOP_BIN))
	cd $(EDITORS_ROOT) && $(EDITORS_GO) build $(if $(filter 1,$(EDITORS_RACE)),-race) -o $(EDITORS_KLOOP_BIN) ./cmd/kloop

test-editors: test-editors-vscode test-editors-neovim test-editors-goland

test-editors-vscode: editors-kloop $(EDITORS_NODE_STAMP)
	cd $(EDITORS_VSCODE) && $(EDITORS_NPM) run --silent test:unit
	cd $(EDITORS_VSCODE) && KLOOP_BIN=$(EDITORS_KLOOP_BIN) $(EDITORS_NPM) run --silent test:integration

test-editors-neovim: editors-kloop
	@command -v $(EDITORS_NVIM) >/dev/null 2>&1 || { echo "editors: $(EDITORS_NVIM) not found: run 'make editors-deps'"; exit 1; }
	cd $(EDITORS_ROOT) && KLOOP_BIN=$(EDITORS_KLOOP_BIN) timeout 300 $(EDITORS_NVIM) --headless -u NONE -i NONE \
	  --cmd 'set rtp^=$(EDITORS_NEOVIM)' -c 'luafile $(EDITORS_NEOVIM)/tests/run.lua'

test-editors-goland: editors-kloop
	cd $(EDITORS_ROOT) && KLOOP_BIN=$(EDITORS_KLOOP_BIN) node --test --test-reporter=spec $(EDITORS_GOLAND)/

vsix: $(EDITORS_NODE_STAMP)
	cd $(EDITORS_VSCODE) && $(EDITORS_NPM) run --silent vsix
	@echo "editors: $(EDITORS_VSCODE)/kloop.vsix"

.DEFAULT_GOAL := $(EDITORS_SAVED_DEFAULT_GOAL)
