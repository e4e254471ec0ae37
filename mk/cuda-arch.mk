# cuda-arch.mk — the backend must keep building for the A100 too (issue 8:
# "sm_90 first, sm_80 compiles"). Wherever nvcc exists, `make check` also
# builds every kernel for CUDA_ARCH_ALSO (sm_80) into
# build/$(CUDA_ARCH_ALSO)/librevela-cuda.so; tests/cli/cuda-arch.sh checks
# that it holds code for that architecture and exports what the main
# backend does. Always under build/, whatever BUILD is: nvcc takes no
# sanitizer flags, so check-asan's nested make finds it made (or makes it
# once). `make cuda-arch-also` builds it alone.
CUDA_ARCH_ALSO ?= sm_80
ALSO_DIR = build/$(CUDA_ARCH_ALSO)
ALSO_OBJ = $(patsubst kernels/%.cu,$(ALSO_DIR)/kernels/%.o,$(CU_SRC))

$(ALSO_DIR)/kernels/%.o: kernels/%.cu $(wildcard kernels/*.cuh lib/*.h)
	@mkdir -p $(dir $@)
	$(NVCC) -O3 -std=c++17 -arch=$(CUDA_ARCH_ALSO) -Xcompiler -fPIC -Ilib -Ikernels -c $< -o $@

$(ALSO_DIR)/librevela-cuda.so: $(ALSO_OBJ)
	$(NVCC) -shared -arch=$(CUDA_ARCH_ALSO) -o $@ $(ALSO_OBJ) $(CUBLASLT_LIB)

.PHONY: cuda-arch-also
ifneq ($(NVCC),)
cuda-arch-also: $(ALSO_DIR)/librevela-cuda.so
check: $(ALSO_DIR)/librevela-cuda.so
else
cuda-arch-also:
	@echo "cuda-arch-also: nvcc not found"
endif
