# Strom's entry points. Uses `deno` from PATH, or installs the pinned Deno from
# npm into .tools/ (git-ignored) the first time it is needed.

DENO_VERSION := 2.9.6
LOCAL_DENO := .tools/node_modules/.bin/deno
DENO ?= $(shell command -v deno 2>/dev/null || echo $(LOCAL_DENO))
PERMS := --allow-net --allow-read --allow-write --allow-env --allow-sys --allow-ffi
# --unstable-no-legacy-abort: request.signal aborts only when the client really goes away.
# --unstable-net: SO_REUSEPORT for `workers`. V8 flags: semi-spaces of 4 MB (V8's default goes
# to 16), and a full collection once the old generation grew by 20 % (at least 8 MB) instead of
# up to 4x. Peak RSS under load ~100 MB against 117-135 with 8 MB semi-spaces alone, at no CPU
# cost this noisy machine could resolve (README, Performance). A regex match that backtracks
# too much finishes in V8's linear-time engine (lib/config/matcher.ts, linearFlags).
FLAGS := --unstable-no-legacy-abort --unstable-net --v8-flags=--max-semi-space-size=4,--heap-growing-percent=20,--enable-experimental-regexp-engine-on-excessive-backtracks,--enable-experimental-regexp-engine,--regexp-backtracks-before-fallback=1000
# --no-code-cache (deno run and compile only): V8's code cache is a SQLite file Deno maps in;
# without it Strom starts ~20 ms slower and peaks 4-6 MB lower under load (README, Performance).
RUN_ONLY := --no-code-cache

.PHONY: start test check fmt dashboard bench soak bench-deps compile release clean deno

## start: Strom on its embedded demo (balancer :8000, admin :9090, backends :8080-8082)
start: deno
	$(DENO) run $(FLAGS) $(RUN_ONLY) $(PERMS) main.ts demo

## test: the whole test suite; the integration tests run once per transport
test: deno
	$(DENO) test $(FLAGS) --allow-all --parallel tests/ bench/
	STROM_TEST_TRANSPORT=fetch $(DENO) test $(FLAGS) --allow-all --parallel tests/integration/

## check: formatting, lint and type check
check: deno
	$(DENO) fmt --check
	$(DENO) lint
	$(DENO) check main.ts lib/ tests/ bench/ scripts/

fmt: deno
	$(DENO) fmt

## dashboard: regenerate lib/admin/dashboard/assets.ts from web/ and uPlot's npm package
dashboard: deno
	$(DENO) run --allow-read --allow-write --allow-run lib/admin/dashboard/build.ts

## bench: the benchmark harness (writes bench/results/latest.md)
bench: deno
	$(DENO) run --allow-all bench/run.ts $(BENCH_ARGS)

## soak: 10 minutes under load with reloads and backend restarts (writes bench/results/soak.md)
soak: deno
	$(DENO) run --allow-all bench/soak.ts $(SOAK_ARGS)

## bench-deps: wrk and the peer proxies from Debian's packages
bench-deps:
	apt-get update && apt-get install -y wrk nginx-light haproxy caddy python3

## compile: single binaries in dist/ for five targets (DENORT_BIN may point at a local denort)
compile: deno
	$(DENO) run --allow-all scripts/build.ts compile

## release: archives, SHA256SUMS and the Homebrew formula (make release VERSION=x.y.z)
release: deno
	@test -n "$(VERSION)" || (echo "usage: make release VERSION=x.y.z" && exit 2)
	$(DENO) run --allow-all scripts/build.ts release --version=$(VERSION) $(if $(PREBUILT),--prebuilt)

deno: $(if $(filter $(LOCAL_DENO),$(DENO)),$(LOCAL_DENO))

$(LOCAL_DENO):
	npm install --prefix .tools --no-save --no-audit --no-fund deno@$(DENO_VERSION)

clean:
	rm -rf dist .tools
