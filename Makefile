# revela — one Makefile for the whole suite.
#   make            build every tool into bin/ (CUDA objects too when nvcc is found)
#   make check      build and run all tests (unit, CLI, reference fixtures); ends "N passed, N failed"
#   make check-asan the same suite under AddressSanitizer + UBSan
#   make check-ref  live comparisons against Python references (creates .venv via pip)
#   make fuzz       run the fuzz targets for FUZZ_SECONDS each (libFuzzer, clang)
#   make bench      benchmarks against peers measured in the same run
#   make demo       the main job on embedded data
#   make install PREFIX=/usr/local   binaries and man pages
#   make deps       install the Debian packages the build needs (scripts/deps.sh)
# Sources are found by wildcard: lib/*.c form librevela.a, cmd/rv-*.c become
# bin/rv-*, tests/unit/test_*.c become unit-test programs, tests/cli/*.sh CLI tests.

CC        ?= cc
PREFIX    ?= /usr/local
BUILD     ?= build
BIN       ?= bin
CUDA_ARCH ?= sm_90
NVCC      ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
FUZZ_SECONDS ?= 60

BLAS_CFLAGS := $(shell pkg-config --cflags openblas 2>/dev/null || echo -I/usr/include/x86_64-linux-gnu/openblas-pthread)
BLAS_LIBS   := $(shell pkg-config --libs openblas 2>/dev/null || echo -lopenblas)

OPT       ?= -O2
SAN       ?=
CFLAGS    ?= $(OPT) -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wno-unused-parameter -fopenmp \
             $(SAN) -Ilib -Icmd/common $(BLAS_CFLAGS) $(CFLAGS)
LDLIBS     = -lzstd -lxxhash $(BLAS_LIBS) -lutf8proc -lstemmer -lm -lpthread
ALL_LDFLAGS = -fopenmp $(SAN) $(LDFLAGS)

LIB_SRC    := $(wildcard lib/*.c)
LIB_OBJ    := $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRC))
COMMON_SRC := $(wildcard cmd/common/*.c)
COMMON_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(COMMON_SRC))
TOOL_SRC   := $(wildcard cmd/rv-*.c)
TOOLS      := $(patsubst cmd/%.c,$(BIN)/%,$(TOOL_SRC))
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BINS  := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
CU_SRC     := $(wildcard kernels/*.cu)
CU_OBJ     := $(if $(NVCC),$(patsubst %.cu,$(BUILD)/%.o,$(CU_SRC)))
# The CUDA backend the tools load on --device cuda (rule in mk/cuda.mk).
CUDA_BACKEND := $(if $(NVCC),$(BIN)/librevela-cuda.so)
FUZZ_SRC   := $(wildcard tests/fuzz/fuzz_*.c)
MAN_PAGES  := $(wildcard man/*.1 man/*.5 man/*.7)
BENCH_BINS := $(patsubst bench/%.c,$(BUILD)/bench/%,$(wildcard bench/*.c))

.SECONDARY:
.DELETE_ON_ERROR:

.PHONY: FORCE bench-build bench-gpu all check check-asan check-ref check-learn check-run fuzz fuzz-build bench demo experiment install deps clean probe cuda

all: probe $(TOOLS) $(CU_OBJ) $(CUDA_BACKEND)

probe:
	@scripts/probe.sh "$(CC)" "$(NVCC)" "$(CUDA_ARCH)"

deps:
	scripts/deps.sh

$(BUILD)/%.o: %.c $(wildcard lib/*.h cmd/common/*.h kernels/*.h) | probe
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/librevela.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# Tools carry the whole library and export its symbols (-rdynamic): the CUDA
# backend, loaded at run time (lib/cuda_loader.h), calls into it.
$(BIN)/rv-%: $(BUILD)/cmd/rv-%.o $(COMMON_OBJ) $(BUILD)/librevela.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -rdynamic -o $@ $(BUILD)/cmd/rv-$*.o $(COMMON_OBJ) \
	    -Wl,--whole-archive $(BUILD)/librevela.a -Wl,--no-whole-archive $(LDLIBS)

$(BUILD)/tests/test_%: tests/unit/test_%.c $(wildcard tests/unit/*.h) $(BUILD)/librevela.a $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests/unit $(ALL_LDFLAGS) -rdynamic -o $@ $< $(COMMON_OBJ) \
	    -Wl,--whole-archive $(BUILD)/librevela.a -Wl,--no-whole-archive $(LDLIBS)

# CUDA: compiled wherever nvcc exists (CI compiles, a GPU machine also runs).
# The stamp holds the architecture the objects were built for: rewritten only
# when CUDA_ARCH changes, so `make CUDA_ARCH=sm_80` after a sm_90 build rebuilds.
$(BUILD)/kernels/arch.stamp: FORCE
	@mkdir -p $(dir $@)
	@echo $(CUDA_ARCH) | cmp -s - $@ || echo $(CUDA_ARCH) >$@
FORCE:
$(BUILD)/kernels/%.o: kernels/%.cu $(wildcard kernels/*.cuh lib/*.h) $(BUILD)/kernels/arch.stamp
	@mkdir -p $(dir $@)
	$(NVCC) -O3 -std=c++17 -arch=$(CUDA_ARCH) -Xcompiler -fPIC -Ilib -Ikernels -c $< -o $@
cuda: $(CU_OBJ)

# Optional rule fragments (e.g. mk/cuda.mk for GPU test programs), one concern each.
-include $(wildcard mk/*.mk)

# ---------------------------------------------------------------- tests
check: all $(UNIT_BINS)
	@BUILD=$(BUILD) BIN=$(BIN) tests/run.sh

check-asan:
	$(MAKE) BUILD=build-asan BIN=build-asan/bin OPT=-O1 \
	    SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" check

check-ref: all
	@BUILD=$(BUILD) BIN=$(BIN) tests/run.sh --ref

# Learning on real text with SmolLM2 (downloads it once): several minutes.
check-learn: all
	@BUILD=$(BUILD) BIN=$(BIN) tests/run.sh --learn

# libFuzzer targets (clang): each runs FUZZ_SECONDS on its seed corpus.
# The fuzzed code only: the stream container, records and JSON.
FUZZ_LIB  := lib/buf.c lib/error.c lib/json.c lib/records.c lib/stream.c
FUZZ_BINS := $(patsubst tests/fuzz/%.c,build-fuzz/%,$(FUZZ_SRC))
build-fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_LIB) $(wildcard lib/*.h)
	@mkdir -p $(dir $@)
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Ilib \
	    -o $@ $< $(FUZZ_LIB) -lzstd -lxxhash -lm
fuzz-build: $(FUZZ_BINS)
fuzz: fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run.sh $(FUZZ_BINS)

# ---------------------------------------------------------------- bench / demo
$(BUILD)/bench/%: bench/%.c $(BUILD)/librevela.a $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(COMMON_OBJ) $(BUILD)/librevela.a $(LDLIBS)
bench-build: all $(BENCH_BINS)
bench: bench-build
	@bench/run.sh

# Issue 8's GPU figures (bench/gpu.sh --all: training step vs the PyTorch peer,
# MFU, in-batch attention memory, encode tok/s, kernels): one table last.
# SKIP (exit 0) without nvcc or without a CUDA device.
ifneq ($(NVCC),)
bench-gpu: all gpu-tests
	@BUILD=$(BUILD) BIN=$(BIN) GPU_BENCH_NO_BUILD=1 bench/gpu.sh --all
else
bench-gpu:
	@echo "SKIP make bench-gpu (nvcc not found)"
endif

demo: all
	@$(MAKE) --no-print-directory -f demo/Makefile
experiment: all
	@$(MAKE) --no-print-directory -f experiment/Makefile

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
	    $(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/man/man7
	install -m 755 $(TOOLS) $(DESTDIR)$(PREFIX)/bin/
	$(if $(CUDA_BACKEND),install -d $(DESTDIR)$(PREFIX)/lib/revela && \
	    install -m 755 $(CUDA_BACKEND) $(DESTDIR)$(PREFIX)/lib/revela/)
	for p in $(MAN_PAGES); do \
	    s=$${p##*.}; install -m 644 $$p $(DESTDIR)$(PREFIX)/share/man/man$$s/; done

clean:
	rm -rf build build-asan build-fuzz bin
