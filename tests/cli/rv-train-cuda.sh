#!/bin/bash
# rv-train --device cuda: the Revela step on the CUDA backend
# (kernels/revela_step_gpu.cu) against the CPU path (lib/revela_step_ref.c)
# on the tiny llama fixture, with the backend built on the CPU emulator
# ($BUILD/gpu-emu/librevela-cuda.so, RV_CUDA_LIB). The device run is split
# (--stop-after 3, then --resume) and compared with one uninterrupted CPU
# run: every log.jsonl column but the timings (loss, pass-A loss, grad-norm
# relative <= 1e-5 / 1e-4; lr equal; W statistics within 1e-5), both
# adapters' tensors (max |cuda - cpu| / max |cpu| <= 1e-3 per tensor:
# AdamW's first updates are ~lr * sign(gradient) whatever its size, so
# rounding-level gradient differences on near-zero entries show at lr
# scale; measured ~4e-5), the same output files, hparams.json byte for
# byte, and checkpoint/adapter headers with the same tensor names and
# shapes. LoRA dropout is at its default (0.1): the device draws the CPU's
# masks. Step 4 runs on adapters the device received after an optimiser
# step, so the curve checks the re-upload. --recompute on the device: step 1
# logged digit for digit as without it, with fewer activation bytes. One
# step with --gpu-dtype bf16:
# recorded in hparams.json, step-1 loss within 2e-3 of the CPU's. Usage
# errors need no backend;
# without the emulated backend (make check-asan) the device checks print
# SKIP. Small on purpose: the emulator takes ~7 s per micro-batch here.
. "$(dirname "$0")/lib.sh"
FX=$T_ROOT/tests/fixtures
D=$T_DIR
M=$FX/model/llama_tied
EMU_LIB=$T_EMU_LIB

# ---------------------------------------------------------------- usage errors (no backend needed)
t_run rv-train --help
t_eq help_device "$(grep -c -- '--device D' "$T_OUT")" 1
t_run rv-train --model "$M" --groups /dev/null --out "$D/x" --device tpu
t_exit bad_device_exit 2
t_stderr_has bad_device_message '--device: expected cpu or cuda, found "tpu"'
t_run rv-train --model "$M" --groups /dev/null --out "$D/x" --gpu 1
t_exit gpu_without_cuda_exit 2
t_run rv-train --model "$M" --groups /dev/null --out "$D/x" --device cuda --objective lm
t_exit cuda_lm_refused 2
t_stderr_has cuda_lm_message '--device cuda runs the Revela step only'
t_run rv-train --model "$M" --groups /dev/null --out "$D/x" --device cuda --gpu-dtype f16
t_exit bad_gpu_dtype_exit 2
t_run rv-train --model "$M" --groups /dev/null --out "$D/x" --gpu-dtype bf16
t_exit gpu_dtype_without_cuda_exit 2
t_run rv-train --model "$M" --groups /dev/null --out "$D/x" --gpu-profile
t_exit gpu_profile_without_cuda_exit 2
t_stderr_has gpu_profile_without_cuda_message '--gpu, --gpu-dtype and --gpu-profile need --device cuda'

cuda_checks="cuda_split_first cuda_resume same_files same_hparams log_parity adapter_parity
             recompute_run recompute_same_step recompute_less_memory
             small_device_refused small_device_hint small_device_no_output small_device_folder_kept
             small_device_recompute
             bf16_run bf16_hparams bf16_loss gpu_profile_header gpu_profile_ops gpu_profile_within_step
             gpu_gemm_profile_header gpu_gemm_profile_frozen_calls gpu_gemm_profile_flops
             tuned_run tuned_report tuned_same_losses"
if [ ! -f "$EMU_LIB" ]; then
    for c in $cuda_checks; do echo "SKIP $T_SUITE/$c (no emulated CUDA backend at $EMU_LIB; make gpu-emu builds it)"; done
    exit 0
fi

rv-cat --encode chunk -o "$D/c.rvs" "$FX/bm25/adi-chunks.jsonl" && rv-bm25group -q -g 3 -o "$D/g.rvs" "$D/c.rvs" 2>/dev/null ||
    { echo "FAIL rv-train-cuda/setup"; exit 1; }
COMMON=(--model "$M" --groups "$D/g.rvs" --lora-rank 4 --lora-alpha 8 --grad-accum 1 --max-steps 4 --warmup 1
        --warmup-shape linear --lr 1e-2 --max-len 12 --save-every 2 --tau 0.05 -t 2 -q)

t_run rv-train "${COMMON[@]}" --out "$D/cpu"; t_exit cpu_run 0
t_run env RV_CUDA_LIB="$EMU_LIB" rv-train "${COMMON[@]}" --out "$D/cuda" --device cuda --stop-after 3
t_exit cuda_split_first 0
t_run env RV_CUDA_LIB="$EMU_LIB" rv-train "${COMMON[@]}" --out "$D/cuda" --device cuda --resume
t_exit cuda_resume 0
t_eq same_files "$(ls "$D/cuda")" "$(ls "$D/cpu")"
t_files_eq same_hparams "$D/cuda/hparams.json" "$D/cpu/hparams.json"

# log.jsonl column by column (loss, pass-A loss 1e-5, grad-norm 1e-4, W statistics 1e-5), then both
# adapters tensor by tensor (1e-3) with the checkpoint/adapter headers: tests/cli/train_compare.py
r=$(python3 "$T_ROOT/tests/cli/train_compare.py" "$D/cuda" "$D/cpu" --lines 4 --no-adapters)
case $r in ok*) t_pass log_parity; echo "INFO $T_SUITE/log_parity: worst loss rel $(echo "$r" | cut -d" " -f2)" ;; *) t_fail log_parity "$r" ;; esac
r=$(python3 "$T_ROOT/tests/cli/train_compare.py" "$D/cuda" "$D/cpu" --no-log)
case $r in
ok*) t_pass adapter_parity; echo "INFO $T_SUITE/adapter_parity: worst tensor rel ${r##* }" ;;
*) t_fail adapter_parity "$r" ;;
esac

# --recompute on the device: the first step's log line (loss, pass-A loss, grad-norm, W statistics)
# equal to the device run without it, digit for digit (the same operations on the same values)
t_run env RV_CUDA_LIB="$EMU_LIB" rv-train "${COMMON[@]}" --out "$D/rc" --device cuda --recompute --stop-after 1
t_exit recompute_run 0
line1() { sed -n 1p "$1/log.jsonl" | sed 's/"tokens_per_s":[^,]*,"ms_per_step":[^,]*,//; s/,"activations_mb":.*//'; }
t_eq recompute_same_step "$(line1 "$D/rc")" "$(line1 "$D/cuda")"
rc_mb=$(sed -n '1s/.*"activations_mb":\([0-9.]*\).*/\1/p' "$D/rc/log.jsonl")
full_mb=$(sed -n '1s/.*"activations_mb":\([0-9.]*\).*/\1/p' "$D/cuda/log.jsonl")
t_eq recompute_less_memory "$(awk -v a="$rc_mb" -v b="$full_mb" 'BEGIN {print (a + 0 < b + 0) ? "yes" : "no: " a " vs " b}')" yes
echo "INFO $T_SUITE/recompute: device activations ${rc_mb} MiB with --recompute, ${full_mb} MiB without"

# A device too small for the activations (the emulator's RV_EMU_DEVICE_MEM: cuBLASLt's 32 MiB
# workspace + 1.5 MB, where this fixture's weights and adapters take ~0.6 MB, its activations
# 1.4 MiB, 0.5 MiB with --recompute): refused before the step allocates them, saying what the step
# needs and the way out (no step logged, no checkpoint), which then works in the same --out
SMALL=$((32 * 1048576 + 1500000))
t_run env RV_EMU_DEVICE_MEM=$SMALL RV_CUDA_LIB="$EMU_LIB" rv-train "${COMMON[@]}" --out "$D/small" --device cuda \
    --stop-after 1
t_exit small_device_refused 1
t_stderr_has small_device_hint 'needs 1.4 MiB of activations on the device (0.5 MiB with --recompute) besides the weights and adapters: try --recompute'
# a run that fails before its first step leaves no folder (it made it) ...
t_eq small_device_no_output "$([ -e "$D/small" ] && ls -A "$D/small" | tr '\n' ' ' || echo absent)" absent
# ... and in a folder that existed, only what was there before
mkdir -p "$D/small_kept" && echo mine >"$D/small_kept/notes.txt"
t_run env RV_EMU_DEVICE_MEM=$SMALL RV_CUDA_LIB="$EMU_LIB" rv-train "${COMMON[@]}" --out "$D/small_kept" --device cuda \
    --stop-after 1
t_eq small_device_folder_kept "$T_RC $(ls -A "$D/small_kept" | tr '\n' ' ')" "1 notes.txt "
t_run env RV_EMU_DEVICE_MEM=$SMALL RV_CUDA_LIB="$EMU_LIB" rv-train "${COMMON[@]}" --out "$D/small" --device cuda \
    --stop-after 1 --recompute
t_exit small_device_recompute 0

# --gpu-dtype bf16: recorded in hparams.json; the step-1 loss near the CPU's (bf16 operands). With
# --gpu-profile over 3 steps: gpu_profile.tsv profiles steps 2-3, with the step's named groups and
# ops, whose device times (serial on one stream) fit in the step's wall time
t_run env RV_CUDA_LIB="$EMU_LIB" rv-train "${COMMON[@]}" --out "$D/bf16" --device cuda --gpu-dtype bf16 --max-steps 3 \
    --gpu-profile
t_exit bf16_run 0
P=$D/bf16/gpu_profile.tsv
t_eq gpu_profile_header "$(sed -n 1p "$P" 2>&1)" "$(printf 'op\tcalls_per_step\tms_per_step\tshare_of_step')"
t_eq gpu_profile_ops "$(cut -f1 "$P" | grep -cxE 'frozen_gemm|lora|rmsnorm|lm_head_ce|causal_attention|inbatch_attention|step')" 7
t_eq gpu_profile_within_step "$(awk -F'\t' 'NR > 1 && $1 != "step" { s += $3; if ($3 < 0) bad = 1 }
    $1 == "step" { w = $3 } END { print (!bad && w > 0 && s > 0 && s <= w * 1.001) ? "yes" : "no: ops " s " ms, step " w " ms" }' "$P")" yes
# gpu_gemm_profile.tsv: every product of the step by shape and group. The frozen projections'
# products are one per frozen_gemm operation, and their FLOPs (2·m·n·k·calls) and the adapters'
# are what bench/README-gpu.md's MFU formula counts: 4·T·N_body and 6·T·N_lora per pass, for this
# model (2 layers, hidden 64, 4 heads / 2 kv of 16, ffn 160; rank 4). T, the pass's tokens (m,
# or k for the adapters' weight gradients, ta = 1), differs between groups; a pass is 2 x 7
# frozen products per layer (forward and backward).
G=$D/bf16/gpu_gemm_profile.tsv
t_eq gpu_gemm_profile_header "$(sed -n 1p "$G" 2>&1)" \
    "$(printf 'group\tm\tn\tk\tta\ttb\tab_type\tc_type\taccumulate\tfallback\tcalls_per_step\tms_per_step\ttflops')"
t_eq gpu_gemm_profile_frozen_calls "$(awk -F'\t' '$1 == "frozen_gemm" { c += $11 } END { print c }' "$G")" \
    "$(awk -F'\t' '$1 == "frozen_gemm" { print $2 + 0 }' "$P")"
t_eq gpu_gemm_profile_flops "$(awk -F'\t' 'NR > 1 { T = $5 == 1 ? $4 : $2; f[$1, T] += 2 * $2 * $3 * $4 * $11 }
    NR > 1 && $1 == "frozen_gemm" { passes[T] += $11 / (2 * 7 * 2) }
    END { nb = 2 * (2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 160)
          nl = 2 * 4 * ((64 + 64) + 2 * (64 + 32) + (64 + 64) + 3 * (64 + 160))
          for (m in passes) { df += f["frozen_gemm", m] - passes[m] * 4 * m * nb
                              dl += f["lora", m] - passes[m] * 6 * m * nl; n++ }
          if (n == 0) { print "no products profiled"; exit }
          printf "%.0f %.0f", df, dl }' "$G")" "0 0"
grep -q '"gpu_weights":"bf16"}$' "$D/bf16/hparams.json"; T_RC=$?; t_exit bf16_hparams 0
# RV_GEMM_TUNE=1: every product's plan times its cuBLASLt candidates (the emulator offers 3 that
# compute alike) on the first call and keeps the fastest; the run reports it (not -q) and its
# losses are the untuned run's, bit for bit here
LOUD=(); for a in "${COMMON[@]}"; do [ "$a" != -q ] && LOUD+=("$a"); done
t_run env RV_GEMM_TUNE=1 RV_CUDA_LIB="$EMU_LIB" rv-train "${LOUD[@]}" --out "$D/tuned" --device cuda --gpu-dtype bf16 \
    --max-steps 3
t_exit tuned_run 0
t_eq tuned_report "$(sed -n 's/^rv-train: RV_GEMM_TUNE=1: \([0-9]*\) of \([0-9]*\) matrix-product plans tuned.*/\1 \2/p' "$T_ERR" |
    awk '{ print ($1 > 0 && $1 == $2) ? "all tuned" : $0 }')" "all tuned"
t_eq tuned_same_losses "$(sed 's/.*"loss":\([^,]*\),"loss_plain":\([^,]*\),.*/\1 \2/' "$D/tuned/log.jsonl")" \
    "$(sed 's/.*"loss":\([^,]*\),"loss_plain":\([^,]*\),.*/\1 \2/' "$D/bf16/log.jsonl")"
r=$(awk -v a="$(sed -n '1s/.*"loss":\([^,]*\),.*/\1/p' "$D/bf16/log.jsonl")" \
        -v b="$(sed -n '1s/.*"loss":\([^,]*\),.*/\1/p' "$D/cpu/log.jsonl")" \
        'BEGIN { if (a == "" || b == "") { print "missing"; exit } e = (a - b) / b; if (e < 0) e = -e
                 printf "%s %s vs %s (rel %.3g)\n", e <= 2e-3 ? "ok" : "bad", a, b, e }')
case $r in
ok*) t_pass bf16_loss; echo "INFO $T_SUITE/bf16_loss: step 1 loss ${r#ok }" ;;
*) t_fail bf16_loss "$r (limit 2e-3)" ;;
esac
