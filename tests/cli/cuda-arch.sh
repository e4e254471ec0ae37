#!/bin/bash
# cuda-arch.sh — the CUDA backend also builds for the A100 (sm_80; issue 8):
# `make check` builds build/sm_80/librevela-cuda.so (mk/cuda-arch.mk; always
# under build/) beside the main $BIN/librevela-cuda.so (CUDA_ARCH, sm_90 by
# default). Checks: it
# exists; its device code names sm_80 and no newer architecture (the fatbins'
# embedded target names); it exports the same rv_cuda_* entry points as the
# main library (no kernel left out of the A100 build).
. "$(dirname "$0")/lib.sh"
ALSO=$T_ROOT/build/sm_80/librevela-cuda.so
MAIN=$T_ROOT/${BIN:-bin}/librevela-cuda.so
checks="built targets_sm80 same_entry_points"
if ! command -v nvcc >/dev/null && [ ! -x /usr/local/cuda/bin/nvcc ]; then
    for c in $checks; do echo "SKIP $T_SUITE/$c (no nvcc: the CUDA backend is not built here)"; done
    exit 0
fi
t_eq built "$([ -f "$ALSO" ] && [ -f "$MAIN" ] && echo yes || echo "no: $ALSO or $MAIN missing (make check builds both)")" yes
arches=$(strings "$ALSO" 2>/dev/null | grep -o 'sm_[0-9][0-9]*a\?' | sort -u | tr '\n' ' ')
t_eq targets_sm80 "$arches" "sm_80 "
exports() { nm -D --defined-only "$1" 2>/dev/null | awk '$3 ~ /^rv_cuda_/ { print $3 }' | sort; }
n_main=$(exports "$MAIN" | wc -l)
if [ "$n_main" -lt 20 ]; then
    t_fail same_entry_points "only $n_main rv_cuda_* symbols in $MAIN"
else
    t_eq same_entry_points "$(diff <(exports "$MAIN") <(exports "$ALSO") && echo "same $n_main")" "same $n_main"
fi
