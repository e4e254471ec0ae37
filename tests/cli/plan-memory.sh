#!/bin/bash
# plan_memory (make plan-memory; tests/gpu/plan_memory.c): the device memory
# of a Revela step per model pair, without a device. Its activations come
# from the step's own allocations run dry (test_step_gpu checks they equal a
# real step's); here: the table's shape, the frozen weights of Llama-3.2-1B
# in bf16 against the published parameter count (1,235,814,400, tied:
# 2.30 GiB less a few KiB of f32 norms' difference), --recompute needing
# less than keeping everything, and the issue's setting (a 3B retriever
# with the 1B LM at B = 16, --recompute) within one 80 GB GPU.
. "$(dirname "$0")/lib.sh"
PM=$T_ROOT/${BUILD:-build}/gpu-emu/plan_memory
checks="runs rows weights_1b recompute_smaller fits_3b_1b bad_usage"
if [ ! -x "$PM" ]; then
    for c in $checks; do echo "SKIP $T_SUITE/$c ($PM not built: make plan-memory)"; done
    exit 0
fi
t_run "$PM" --b 16
t_exit runs 0
rows=$(grep -c '^Llama' "$T_OUT")
t_eq rows "$rows" 6
# published: 1,235,814,400 parameters; bf16 = 2 bytes each (the 33 norms of 2048 are f32: +135 KiB)
want=$(awk 'BEGIN { printf "%.2f", (1235814400 * 2 + 33 * 2048 * 2) / 1073741824 }')
t_eq weights_1b "$(awk '$1 == "Llama-3.2-1B" && $2 == "Llama-3.2-1B" && $7 == "-" { print $8 }' "$T_OUT")" "$want"
t_eq recompute_smaller "$(awk '$7 == "-" { a = $11 } $7 == "recompute" { if (!($11 < a)) bad = 1; n++ }
    END { print (n == 3 && !bad) ? "yes" : "no" }' "$T_OUT")" yes
t_eq fits_3b_1b "$(awk '$1 == "Llama-3.2-3B" && $7 == "recompute" { print $(NF - 2) }' "$T_OUT")" fits
t_run "$PM" --rank 0
t_exit bad_usage 2
