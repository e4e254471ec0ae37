# step-gpu.mk — the Revela training step on the CUDA backend
# (kernels/revela_step_gpu.cu) against the CPU reference step:
#   $(BUILD)/gpu-emu/test_step_gpu   on the CPU emulator (no nvcc needed); in `make check`
#                                    as $(BUILD)/tests/test_step_gpu_emu (not under sanitizers,
#                                    as test_gpu_emu in mk/cuda.mk)
#   $(BUILD)/gpu/test_step_gpu       real CUDA (make gpu-tests; prints SKIP without a device)
#   $(BUILD)/gpu-emu-asan/test_step_gpu  the emulated one under ASan + UBSan (make gpu-emu-asan)
# Variables are defined here rather than taken from mk/cuda.mk, so the order
# the fragments are read in does not matter.

STEP_GPU_DEPS = tests/gpu/test_step_gpu.c tests/unit/test.h tests/unit/test_fixture.h kernels/revela_step_gpu.h kernels/cuda_ops.h \
                $(wildcard lib/*.h) $(BUILD)/librevela.a
STEP_EMU_OBJ  = $(patsubst kernels/%.cu,$(BUILD)/gpu-emu/kernels/%.o,$(CU_SRC))

$(BUILD)/gpu-emu/test_step_gpu: $(STEP_GPU_DEPS) $(STEP_EMU_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DRV_CUDA_EMULATE -Ikernels -Itests/unit $(ALL_LDFLAGS) -o $@ $< $(STEP_EMU_OBJ) \
	    $(BUILD)/librevela.a $(LDLIBS) -lstdc++

$(BUILD)/gpu/test_step_gpu: $(STEP_GPU_DEPS) $(CU_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Ikernels -Itests/unit $(ALL_LDFLAGS) -o $@ $< $(CU_OBJ) $(BUILD)/librevela.a $(LDLIBS) \
	    $(CUDA_LDLIBS)

# the same under ASan + UBSan (make gpu-emu-asan, with mk/cuda.mk's emulated
# kernels built so): an out-of-bounds access to any device buffer of the step
# is reported (~2 minutes)
$(BUILD)/gpu-emu-asan/test_step_gpu: $(STEP_GPU_DEPS) $(patsubst kernels/%.cu,$(BUILD)/gpu-emu-asan/kernels/%.o,$(CU_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fsanitize=address,undefined -fno-omit-frame-pointer -DRV_CUDA_EMULATE -Ikernels -Itests/unit \
	    $(ALL_LDFLAGS) -fsanitize=address,undefined -o $@ $< \
	    $(patsubst kernels/%.cu,$(BUILD)/gpu-emu-asan/kernels/%.o,$(CU_SRC)) $(BUILD)/librevela.a $(LDLIBS) -lstdc++
.PHONY: gpu-emu-asan-step
gpu-emu-asan-step: $(BUILD)/gpu-emu-asan/test_step_gpu
	$(BUILD)/gpu-emu-asan/test_step_gpu
gpu-emu-asan: gpu-emu-asan-step   # (a prerequisite only: mk/cuda.mk's recipe runs test_gpu_ops)

gpu-emu: $(BUILD)/gpu-emu/test_step_gpu
ifneq ($(NVCC),)
gpu-tests: $(BUILD)/gpu/test_step_gpu
endif

ifeq ($(SAN),)
$(BUILD)/tests/test_step_gpu_emu: $(BUILD)/gpu-emu/test_step_gpu
	@mkdir -p $(dir $@)
	cp $< $@
check: $(BUILD)/tests/test_step_gpu_emu
endif
