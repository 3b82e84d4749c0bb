# Thin wrapper around CMake. The two entry points the README gives:
#   make demo   install dependencies, build, run the daemon against the mock Partoo
#   make check  install dependencies, lint, build (normal, ASan+UBSan, ThreadSanitizer,
#               libFuzzer), run every test
JOBS ?= 2
CTEST_JOBS ?= 3

.PHONY: all deps build build-asan build-tsan lint format check test test-asan test-tsan test-fuzz \
        demo bench clean coverage

all: build

deps:
	@scripts/install-deps.sh

build: deps
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOBX_WERROR=ON
	cmake --build build -j$(JOBS)

build-asan: deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DOBX_WERROR=ON \
	    -DOBX_SANITIZE=address,undefined
	cmake --build build-asan -j$(JOBS)

build-tsan: deps
	cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DOBX_WERROR=ON -DOBX_SANITIZE=thread
	cmake --build build-tsan -j$(JOBS)

test: build
	cd build && ctest --output-on-failure -j$(CTEST_JOBS)

test-asan: build-asan
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    ctest --output-on-failure -j$(CTEST_JOBS)

# ThreadSanitizer (issue 13): the unit and integration tests again, every binary (outbox,
# the unit tests; the mock too) built with -fsanitize=thread, so data races and lock-order
# inversions between the event loop and the worker threads (verify_pool, the store thread)
# fail the run. halt_on_error: the first report kills the process. Reports go to
# build-tsan/tsan-reports/report.<pid> (log_path), and the run fails when any is there after
# ctest even if every test passed: `serve` runs in the background of the integration
# scripts, which do not always look at how it exited (a race in its shutdown would
# otherwise go unseen). tests/tsan.supp: false positives in uninstrumented system libraries
# only, never our code.
#
# Tests not run under TSan, each with its reason (a regex for ctest -E):
#   integration_test_valgrind  valgrind cannot run a TSan binary (serve never starts under
#                              it: TSan reserves terabytes of shadow memory at fixed
#                              addresses); the normal build runs it
TSAN_EXCLUDE = ^integration_test_valgrind$$
TSAN_REPORTS = $(CURDIR)/build-tsan/tsan-reports
TSAN_OPTIONS_RUN = halt_on_error=1:second_deadlock_stack=1
TSAN_OPTIONS_RUN := $(TSAN_OPTIONS_RUN):suppressions=$(CURDIR)/tests/tsan.supp
TSAN_OPTIONS_RUN := $(TSAN_OPTIONS_RUN):log_path=$(TSAN_REPORTS)/report
# Some kernels randomise mmap over more bits (vm.mmap_rnd_bits 32 on Ubuntu 24.04 and
# newer kernels) than the TSan runtime of GCC 12 / LLVM < 18 expects; every TSan binary
# then dies at start with "FATAL: ThreadSanitizer: unexpected memory mapping". The probe
# runs `outbox --version`: only when that fails with this message does ctest run under
# `setarch <arch> -R` (no address randomisation for it and its children), which fixes it;
# elsewhere the tests run as they are.
test-tsan: build-tsan
	rm -rf $(TSAN_REPORTS) && mkdir -p $(TSAN_REPORTS)
	cd build-tsan && run=; \
	if ! ./outbox --version >/dev/null 2>tsan-probe.log; then \
	    if grep -q 'unexpected memory mapping' tsan-probe.log; then \
	        run="setarch $$(uname -m) -R"; \
	        echo "TSan: unexpected memory mapping; running the tests under $$run"; \
	        $$run ./outbox --version >/dev/null || exit 1; \
	    else cat tsan-probe.log; exit 1; fi; \
	fi; \
	TSAN_OPTIONS=$(TSAN_OPTIONS_RUN) $$run ctest --output-on-failure -j$(CTEST_JOBS) \
	    -E '$(TSAN_EXCLUDE)'; st=$$?; \
	if [ -n "$$(ls -A $(TSAN_REPORTS))" ]; then \
	    cat $(TSAN_REPORTS)/*; echo "ThreadSanitizer reports: $(TSAN_REPORTS)"; exit 1; \
	fi; exit $$st

# libFuzzer targets (clang), each run for FUZZ_SECONDS on a copy of its seed corpus after
# replaying every saved regression input.
FUZZ_TARGETS = fuzz_msg_json fuzz_jsonl_line fuzz_webhook_event fuzz_config fuzz_retry_after \
               fuzz_signature
test-fuzz: deps
	CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DOBX_WERROR=ON -DOBX_FUZZ=ON
	cmake --build build-fuzz -j$(JOBS) --target $(FUZZ_TARGETS)
	cd build-fuzz && ctest --output-on-failure -L fuzz -j$(JOBS)

# Static analysis: clang-tidy (.clang-tidy) and cppcheck's warning, performance and
# portability checks (its style checks argue with the house style, e.g. declarations at the
# top). Any finding fails. The compile database comes from configuring LINT_BUILD (build/);
# nothing is compiled. clang-tidy runs one process per file: clang-tidy 14 invents
# valist.Uninitialized findings when one process analyses several files. -UNDEBUG: the
# analyzer should know the invariants the asserts state, as Debug builds do.
# Then the house rules: tools/check_export_prefix.sh (names point to their file; it builds
# the obx library of LINT_BUILD for nm), tools/check_format.sh (.clang-format).
LINT_SOURCES = $(wildcard lib/*.c cmd/outbox/*.c)
LINT_BUILD ?= build
lint: deps
	cmake -S . -B $(LINT_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOBX_WERROR=ON >/dev/null
	cppcheck -q --std=c11 --enable=warning,performance,portability --library=posix \
	    --inline-suppr --suppress=missingIncludeSystem --error-exitcode=1 -j$(JOBS) -Ilib \
	    $(LINT_SOURCES)
	printf '%s\n' $(LINT_SOURCES) | xargs -n1 -P$(JOBS) clang-tidy -p $(LINT_BUILD) --quiet \
	    --extra-arg=-UNDEBUG
	tools/check_store_boundary.sh
	tools/check_cli_boundary.sh
	tools/check_table_owners.sh
	JOBS=$(JOBS) tools/check_export_prefix.sh $(LINT_BUILD)
	tools/check_format.sh

# Rewrites the C sources as .clang-format says (tools/check_format.sh, in `make lint`, checks it).
format:
	tools/check_format.sh --fix

check: lint test test-asan test-tsan test-fuzz

# Line coverage (issue 18), not part of `make check` (CI time): build-cov/ is built with
# -DOBX_COVERAGE=ON (gcov on the library, the binary and the unit tests, -O0), the whole
# ctest suite runs (unit and integration: the integration scripts run the instrumented
# binary, so what they reach counts), then gcovr prints per-file line coverage for lib/ and
# cmd/ with the lib/ and cmd/ totals (a Markdown table, as docs/testing.md records it) and
# writes an annotated HTML report to build-cov/coverage/index.html. Counters from an earlier
# run are removed first. The report is printed even when a test fails; the exit status is
# then ctest's.
COV_BUILD = build-cov
coverage: deps
	cmake -S . -B $(COV_BUILD) -DCMAKE_BUILD_TYPE=Debug -DOBX_WERROR=ON -DOBX_COVERAGE=ON
	cmake --build $(COV_BUILD) -j$(JOBS)
	find $(COV_BUILD) -name '*.gcda' -delete
	rm -rf $(COV_BUILD)/coverage && mkdir -p $(COV_BUILD)/coverage
	cd $(COV_BUILD) && ctest --output-on-failure -j$(CTEST_JOBS); echo $$? > coverage/ctest.rc
	# Processes that exit at the same moment can leave a call counter negative in a .gcda
	# ("call 0 returned -1"): a call count, not a line count, so it is skipped, not fatal.
	gcovr -r . --object-directory $(COV_BUILD) -j$(JOBS) --filter 'lib/' --filter 'cmd/' \
	    --gcov-ignore-parse-errors \
	    --json-summary $(COV_BUILD)/coverage/summary.json \
	    --html-details $(COV_BUILD)/coverage/index.html $(COV_BUILD)
	scripts/coverage-report.py $(COV_BUILD)/coverage/summary.json
	@exit $$(cat $(COV_BUILD)/coverage/ctest.rc)

# The Debian package (issue 17): build/partoo-outbox_<version>_<arch>.deb, made by CPack
# (cmake/deb_stage.cmake adds the conffile, the unit, copyright and changelog).
# tests/integration/test_pkg_deb.sh builds it in `make check` and runs lintian on it.
.PHONY: deb
deb: build
	cmake --build build --target deb

demo: build
	scripts/demo.sh

bench: build
	bench/run_all.sh

clean:
	rm -rf build build-asan build-tsan build-fuzz build-cov
