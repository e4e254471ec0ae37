# cuda.mk — the CUDA backend library and GPU test programs (included by the
# Makefile; kernels/*.cu are compiled by the Makefile's own rule into
# $(BUILD)/kernels/*.o).
#   make               also $(BIN)/librevela-cuda.so where nvcc exists (tools load it on --device cuda)
#   make gpu-tests     $(BUILD)/gpu/test_gpu_ops (the parity test, real CUDA; needs nvcc)
#                      and $(BUILD)/gpu/bench_gpu (the in-batch attention / GEMM timer)
#   make gpu-emu       $(BUILD)/gpu-emu/test_gpu_ops (and bench_gpu, librevela-cuda.so): the same
#                      programs and backend with kernels/*.cu compiled as C++ for the CPU
#                      emulator (kernels/dev/cuda_emu.h; no nvcc needed)
#   make gpu-emu-asan  the emulated tests (test_gpu_ops, test_step_gpu) under ASan + UBSan
#                      (out-of-bounds kernel accesses)
#   make gpu-check     builds both and runs them (real one SKIPs without a device)
#   make plan-memory   the device memory a Revela step needs per model pair, B, L, rank and
#                      --recompute (tests/gpu/plan_memory.c; no device needed)
# `make check` (not under sanitizers) also builds $(BUILD)/tests/test_gpu_ops (prints
# SKIP without a device, so CI counts nothing for it) and $(BUILD)/tests/test_gpu_emu
# (kernel logic on the emulator, small shapes). scripts/gpu-check.sh is the one
# script for a machine with a GPU.

CUDA_HOME   ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_LIBDIRS = $(CUDA_HOME)/lib64 $(CUDA_HOME)/targets/x86_64-linux/lib $(CUDA_HOME)/lib
# cudart comes from the toolkit (static); cuBLASLt from wherever it is: the
# toolkit, or (override CUBLASLT_LIB=/path/libcublasLt.so.N, as
# scripts/gpu-check.sh does) a Python wheel's copy.
CUDART_LIBDIR ?= $(patsubst %/,%,$(dir $(firstword $(wildcard $(addsuffix /libcudart_static.a,$(CUDA_LIBDIRS))))))
CUBLASLT_LIB  ?= $(firstword $(wildcard $(addsuffix /libcublasLt.so,$(CUDA_LIBDIRS)) $(addsuffix /libcublasLt.so.*,$(CUDA_LIBDIRS))))
CUDA_LDLIBS = $(CUBLASLT_LIB) -Wl,-rpath,$(patsubst %/,%,$(dir $(CUBLASLT_LIB))) -L$(CUDART_LIBDIR) -lcudart_static \
              -ldl -lrt -lpthread -lstdc++

GPU_TEST_DEPS = tests/gpu/test_gpu_ops.c kernels/cuda_ops.h $(wildcard lib/*.h) $(BUILD)/librevela.a

# The emulator's build of kernels/*.cu (defined before any rule names it:
# make expands prerequisites when it reads a rule).
EMU_CXXFLAGS = -std=c++17 -O2 -g -fPIC -Wall -Wextra -Wshadow -Wno-unknown-pragmas -DRV_CUDA_EMULATE -Ilib -Ikernels
EMU_OBJ = $(patsubst kernels/%.cu,$(BUILD)/gpu-emu/kernels/%.o,$(CU_SRC))

# ---------------------------------------------------------------- the backend library
# kernels/*.cu as one shared library, loaded by the tools on --device cuda
# (lib/cuda_loader.h). Its librevela calls resolve against the tool.
$(BIN)/librevela-cuda.so: $(CU_OBJ)
	@mkdir -p $(dir $@)
	$(NVCC) -shared -arch=$(CUDA_ARCH) -o $@ $(CU_OBJ) $(CUBLASLT_LIB) -Xlinker -rpath,$(patsubst %/,%,$(dir $(CUBLASLT_LIB)))

# The same backend on the CPU emulator: CLI tests run `--device cuda` with
# RV_CUDA_LIB pointing here.
$(BUILD)/gpu-emu/librevela-cuda.so: $(EMU_OBJ)
	@mkdir -p $(dir $@)
	$(CXX) -shared -o $@ $(EMU_OBJ)

# ---------------------------------------------------------------- real CUDA
$(BUILD)/gpu/test_gpu_ops: $(GPU_TEST_DEPS) $(CU_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Ikernels $(ALL_LDFLAGS) -o $@ $< $(CU_OBJ) $(BUILD)/librevela.a $(LDLIBS) $(CUDA_LDLIBS)

$(BUILD)/gpu/bench_gpu: tests/gpu/bench_gpu.c kernels/cuda_ops.h $(wildcard lib/*.h) $(BUILD)/librevela.a $(CU_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Ikernels $(ALL_LDFLAGS) -o $@ $< $(CU_OBJ) $(BUILD)/librevela.a $(LDLIBS) $(CUDA_LDLIBS)

# ---------------------------------------------------------------- CPU emulator

$(BUILD)/gpu-emu/kernels/%.o: kernels/%.cu $(wildcard kernels/*.cuh kernels/*.h kernels/dev/*.h lib/*.h)
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_CXXFLAGS) -x c++ -c $< -o $@

$(BUILD)/gpu-emu/test_gpu_ops: $(GPU_TEST_DEPS) $(EMU_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DRV_CUDA_EMULATE -Ikernels $(ALL_LDFLAGS) -o $@ $< $(EMU_OBJ) $(BUILD)/librevela.a $(LDLIBS) -lstdc++

$(BUILD)/gpu-emu/bench_gpu: tests/gpu/bench_gpu.c kernels/cuda_ops.h $(wildcard lib/*.h) $(BUILD)/librevela.a $(EMU_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DRV_CUDA_EMULATE -Ikernels $(ALL_LDFLAGS) -o $@ $< $(EMU_OBJ) $(BUILD)/librevela.a $(LDLIBS) -lstdc++

# The device-memory planner (no device needed: the step's allocations run dry).
$(BUILD)/gpu-emu/plan_memory: tests/gpu/plan_memory.c kernels/revela_step_gpu.h $(wildcard lib/*.h) $(BUILD)/librevela.a $(EMU_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DRV_CUDA_EMULATE -Ikernels $(ALL_LDFLAGS) -o $@ $< $(EMU_OBJ) $(BUILD)/librevela.a $(LDLIBS) -lstdc++

# The emulated kernels under ASan + UBSan: "device" buffers and shared memory are
# host allocations of exact size, so a kernel's out-of-bounds access is reported.
EMU_SAN = -fsanitize=address,undefined -fno-omit-frame-pointer
EMU_ASAN_OBJ = $(patsubst kernels/%.cu,$(BUILD)/gpu-emu-asan/kernels/%.o,$(CU_SRC))
$(BUILD)/gpu-emu-asan/kernels/%.o: kernels/%.cu $(wildcard kernels/*.cuh kernels/*.h kernels/dev/*.h lib/*.h)
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_CXXFLAGS) -O1 $(EMU_SAN) -x c++ -c $< -o $@
$(BUILD)/gpu-emu-asan/test_gpu_ops: $(GPU_TEST_DEPS) $(EMU_ASAN_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(EMU_SAN) -DRV_CUDA_EMULATE -Ikernels $(ALL_LDFLAGS) $(EMU_SAN) -o $@ $< $(EMU_ASAN_OBJ) \
	    $(BUILD)/librevela.a $(LDLIBS) -lstdc++

# ---------------------------------------------------------------- targets
.PHONY: gpu-tests gpu-emu gpu-emu-asan gpu-check plan-memory
plan-memory: $(BUILD)/gpu-emu/plan_memory
	$(BUILD)/gpu-emu/plan_memory
ifneq ($(NVCC),)
gpu-tests: $(BUILD)/gpu/test_gpu_ops $(BUILD)/gpu/bench_gpu
else
gpu-tests:
	@echo "gpu-tests: nvcc not found; only the emulated test (make gpu-emu) can be built"
endif
gpu-emu: $(BUILD)/gpu-emu/test_gpu_ops $(BUILD)/gpu-emu/bench_gpu $(BUILD)/gpu-emu/librevela-cuda.so
gpu-emu-asan: $(BUILD)/gpu-emu-asan/test_gpu_ops
	$(BUILD)/gpu-emu-asan/test_gpu_ops

gpu-check: gpu-tests gpu-emu
	@$(BUILD)/gpu-emu/test_gpu_ops
	@if [ -x $(BUILD)/gpu/test_gpu_ops ]; then $(BUILD)/gpu/test_gpu_ops; fi

# In `make check` (tests/run.sh runs $(BUILD)/tests/test_*), except under sanitizers:
# the emulated kernels have their own ASan run (make gpu-emu-asan), and the
# CUDA runtime of the real build does not mix with ASan.
ifeq ($(SAN),)
$(BUILD)/tests/test_gpu_emu: $(BUILD)/gpu-emu/test_gpu_ops
	@mkdir -p $(dir $@)
	cp $< $@
check: $(BUILD)/tests/test_gpu_emu $(BUILD)/gpu-emu/librevela-cuda.so $(BUILD)/gpu-emu/plan_memory
ifneq ($(NVCC),)
$(BUILD)/tests/test_gpu_ops: $(BUILD)/gpu/test_gpu_ops
	@mkdir -p $(dir $@)
	cp $< $@
check: $(BUILD)/tests/test_gpu_ops
endif
endif
