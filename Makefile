# Thin wrapper around CMake. The two entry points the README gives:
#   make demo   install dependencies, build, run the daemon against the mock Partoo
#   make check  install dependencies, lint, build (normal, ASan+UBSan, libFuzzer), run every
#               test
JOBS ?= 2
CTEST_JOBS ?= 3

.PHONY: all deps build build-asan lint check test test-asan test-fuzz demo bench clean

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

test: build
	cd build && ctest --output-on-failure -j$(CTEST_JOBS)

test-asan: build-asan
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    ctest --output-on-failure -j$(CTEST_JOBS)

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
	tools/check_table_owners.sh

check: lint test test-asan test-fuzz

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
	rm -rf build build-asan build-fuzz
