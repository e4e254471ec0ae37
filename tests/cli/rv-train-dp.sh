#!/bin/bash
# rv-train data parallel (man rv-train, DATA PARALLEL): N ranks, each
# computing its share of every step's groups, gradients summed through the
# host communicator (lib/comm_tcp.c), against one process on the same data.
# On the CPU the ranks are started the way a launcher would (RANK /
# WORLD_SIZE / LOCAL_RANK / RV_RENDEZVOUS); with the emulated CUDA backend
# `--device cuda --gpus 2 --comm tcp` starts them itself (RV_EMU_DEVICES=2).
# Compared with tests/cli/train_compare.py (its own JSON/safetensors reader):
# every log.jsonl column but timings (loss relative <= 1e-5: the sum over
# ranks is grouped differently, and the logged statistics travel as
# float32), both adapters (max |diff| / max |ref| <= 1e-3 per tensor, as
# rv-train-cuda.sh: AdamW's first updates are ~lr * sign(gradient)), the
# same files as the single-process run, hparams.json byte for byte (the
# world size is not a hyper-parameter), nothing written by ranks > 0.
# Step 1 is compared tighter (loss 3e-7, grad-norm 1e-6): the parameters
# are still the same there. Cases: 2 ranks (grad-accum 4: 2 groups each), 3 ranks (2, 1, 1), 3 ranks
# with grad-accum 2 (rank 2 idle every step), a 2-rank checkpoint resumed on
# 3 ranks and on 1, LoRA dropout on (keyed by the group, not the rank).
# Failures: usage errors, ranks without a rendezvous, a rank that dies
# (the other gets an error naming it, not a hang), and --gpus where NCCL is
# missing (the emulator): exit 1 naming the rank, no rank left running.
. "$(dirname "$0")/lib.sh"
FX=$T_ROOT/tests/fixtures
D=$T_DIR
M=$FX/model/llama_tied
EMU_LIB=$T_EMU_LIB
export RV_COMM_TIMEOUT=60   # a broken test fails within a minute instead of hanging

# ---------------------------------------------------------------- usage errors
t_run rv-train --help
t_eq help_gpus "$(grep -c -- '--gpus N' "$T_OUT")" 1
t_run rv-train --model "$M" --groups /dev/null --out "$D/x" --gpus 2
t_exit gpus_without_cuda 2
t_stderr_has gpus_without_cuda_message '--gpus needs --device cuda'
t_run rv-train --model "$M" --groups /dev/null --out "$D/x" --device cuda --gpus 2 --gpu 1
t_exit gpus_with_gpu 2
t_run rv-train --model "$M" --groups /dev/null --out "$D/x" --comm nccl
t_exit nccl_without_cuda 2
t_run rv-train --model "$M" --groups /dev/null --out "$D/x" --device cuda --comm mpi
t_exit bad_comm 2
t_run rv-train --model "$M" --groups /dev/null --out "$D/x" --device cuda --gpus 0
t_exit gpus_zero 2
t_run rv-train --model "$M" --groups - --out "$D/x" --device cuda --gpus 2
t_exit gpus_stdin 2
t_stderr_has gpus_stdin_message 'not standard input'
t_run env RANK=0 WORLD_SIZE=2 LOCAL_RANK=0 rv-train --model "$M" --groups /dev/null --out "$D/x"
t_exit no_rendezvous 1
t_stderr_has no_rendezvous_message 'RV_RENDEZVOUS'

rv-cat --encode chunk -o "$D/c.rvs" "$FX/bm25/adi-chunks.jsonl" && rv-bm25group -q -g 3 -o "$D/g.rvs" "$D/c.rvs" 2>/dev/null ||
    { echo "FAIL $T_SUITE/setup"; exit 1; }
COMMON=(--model "$M" --groups "$D/g.rvs" --lora-rank 4 --lora-alpha 8 --max-steps 4 --warmup 1
        --warmup-shape linear --lr 1e-2 --max-len 12 --save-every 2 --tau 0.05 -q)

# ranks NAME N ARGS...: N processes as a launcher starts them; statuses in $D/NAME.rc (one per line)
ranks() {
    local name=$1 n=$2 r pids=()
    shift 2
    for ((r = 0; r < n; r++)); do
        env RANK=$r WORLD_SIZE=$n LOCAL_RANK=$r LOCAL_WORLD_SIZE=$n RV_RENDEZVOUS="$D/$name.rdv" \
            rv-train "$@" -t 1 >"$D/$name.$r.out" 2>"$D/$name.$r.err" </dev/null &
        pids+=($!)
    done
    : >"$D/$name.rc"
    for p in "${pids[@]}"; do wait "$p"; echo $? >>"$D/$name.rc"; done
}
all_zero() { [ -z "$(grep -v '^0$' "$1")" ] && [ -s "$1" ]; }
# compare NAME GOT REF [train_compare.py options]
compare() {
    local name=$1 got=$2 ref=$3 r
    shift 3
    r=$(python3 "$T_ROOT/tests/cli/train_compare.py" "$got" "$ref" "$@")
    case $r in
    ok*) t_pass "$name"; echo "INFO $T_SUITE/$name: worst loss rel, adapter rel: ${r#ok }" ;;
    *) echo "FAIL $T_SUITE/$name"; echo "  $r" ;;
    esac
}

# ---------------------------------------------------------------- one process (the references)
t_run rv-train "${COMMON[@]}" --grad-accum 4 --out "$D/one4" -t 2; t_exit one_process_accum4 0
t_run rv-train "${COMMON[@]}" --grad-accum 2 --out "$D/one2" -t 1; t_exit one_process_accum2 0

# a stray RANK (make exports its command-line variables, e.g. `make experiment RANK=8`) is not a launcher
t_run env RANK=8 rv-train "${COMMON[@]}" --grad-accum 2 --max-steps 1 --out "$D/stray" -t 1
t_exit stray_rank_variable 0

# ---------------------------------------------------------------- 2 ranks
ranks dp2 2 "${COMMON[@]}" --grad-accum 4 --out "$D/dp2"
all_zero "$D/dp2.rc"; T_RC=$?; T_ERR=$D/dp2.1.err; t_exit two_ranks 0
compare two_ranks_parity "$D/dp2" "$D/one4"
t_eq two_ranks_files "$(ls -A "$D/dp2")" "$(ls -A "$D/one4")"
t_files_eq two_ranks_hparams "$D/dp2/hparams.json" "$D/one4/hparams.json"
t_eq two_ranks_rank1_silent "$(cat "$D/dp2.1.out" "$D/dp2.1.err")" ""

# step 1 starts from the same parameters on both sides, so there only the order of the float sums
# differs: its grad-norm within 1e-6 and its loss within 3e-7 (float32 statistics) relative; a
# group counted twice or left out would move both by far more
compare two_ranks_step1 "$D/dp2" "$D/one4" --lines 1 --no-adapters --loss-tol 3e-7 --norm-tol 1e-6 --w-tol 1e-6

# ---------------------------------------------------------------- 3 ranks: 2, 1, 1 groups a step
ranks dp3 3 "${COMMON[@]}" --grad-accum 4 --out "$D/dp3"
all_zero "$D/dp3.rc"; T_RC=$?; T_ERR=$D/dp3.0.err; t_exit three_ranks 0
compare three_ranks_parity "$D/dp3" "$D/one4"
compare three_ranks_step1 "$D/dp3" "$D/one4" --lines 1 --no-adapters --loss-tol 3e-7 --norm-tol 1e-6 --w-tol 1e-6

# ---------------------------------------------------------------- 3 ranks, 2 groups a step: rank 2 only sums
ranks idle 3 "${COMMON[@]}" --grad-accum 2 --out "$D/idle"
all_zero "$D/idle.rc"; T_RC=$?; T_ERR=$D/idle.2.err; t_exit idle_rank 0
compare idle_rank_parity "$D/idle" "$D/one2"
compare idle_rank_step1 "$D/idle" "$D/one2" --lines 1 --no-adapters --loss-tol 3e-7 --norm-tol 1e-6 --w-tol 1e-6

# ---------------------------------------------------------------- checkpoints from 2 ranks resume on 3 and on 1
ranks half 2 "${COMMON[@]}" --grad-accum 4 --out "$D/r3" --stop-after 2
all_zero "$D/half.rc"; T_RC=$?; T_ERR=$D/half.0.err; t_exit resume_first_half 0
cp -r "$D/r3" "$D/r1"
ranks rest 3 "${COMMON[@]}" --grad-accum 4 --out "$D/r3" --resume
all_zero "$D/rest.rc"; T_RC=$?; T_ERR=$D/rest.0.err; t_exit resume_on_3 0
compare resume_2_to_3_parity "$D/r3" "$D/one4"
t_run rv-train "${COMMON[@]}" --grad-accum 4 --out "$D/r1" --resume -t 2; t_exit resume_on_1 0
compare resume_2_to_1_parity "$D/r1" "$D/one4"

# ---------------------------------------------------------------- a rank that dies
# rank 1 cannot load its model after the ranks met: rank 0 must fail at the
# first all-reduce, naming rank 1, instead of waiting for it
: >"$D/die.rc"
env RANK=0 WORLD_SIZE=2 LOCAL_RANK=0 RV_RENDEZVOUS="$D/die.rdv" rv-train "${COMMON[@]}" --grad-accum 4 --out "$D/die" -t 1 \
    >/dev/null 2>"$D/die.0.err" </dev/null &
p0=$!
env RANK=1 WORLD_SIZE=2 LOCAL_RANK=1 RV_RENDEZVOUS="$D/die.rdv" rv-train "${COMMON[@]}" --grad-accum 4 --out "$D/die" -t 1 \
    --model "$D/no-such-model" >/dev/null 2>"$D/die.1.err" </dev/null
rc1=$?
wait $p0
rc0=$?
T_RC=$rc0; T_ERR=$D/die.0.err; t_exit dead_peer_rank0 1
t_stderr_has dead_peer_message 'rank 1'
T_RC=$rc1; T_ERR=$D/die.1.err; t_exit dead_peer_rank1 1

# ---------------------------------------------------------------- --gpus on the emulated CUDA backend
if [ ! -f "$EMU_LIB" ]; then
    for c in gpus_tcp gpus_tcp_parity gpus_tcp_files gpus_one_device_each gpus_no_nccl gpus_no_nccl_message gpus_no_nccl_cleanup; do
        echo "SKIP $T_SUITE/$c (no emulated CUDA backend at $EMU_LIB; make gpu-emu builds it)"
    done
    exit 0
fi
# the emulator runs ~7 s per micro-batch here: 2 steps of 2 groups, one per rank
t_run env RV_CUDA_LIB="$EMU_LIB" RV_EMU_DEVICES=2 rv-train "${COMMON[@]}" --grad-accum 2 --out "$D/gpus" \
    --device cuda --gpus 2 --comm tcp --stop-after 2 -t 1
t_exit gpus_tcp 0
compare gpus_tcp_parity "$D/gpus" "$D/one2" --lines 2 --no-adapters
t_eq gpus_tcp_files "$(ls -A "$D/gpus")" "$(ls -A "$D/one2")"
# one device visible per rank (srun --gpus-per-task 1): LOCAL_RANK 1 takes device 1 mod 1 = 0
t_run env RV_CUDA_LIB="$EMU_LIB" RV_EMU_DEVICES=1 rv-train "${COMMON[@]}" --grad-accum 2 --out "$D/bound" \
    --device cuda --gpus 2 --comm tcp --stop-after 1 -t 1
t_exit gpus_one_device_each 0
# NCCL is absent from the emulator: rank 0 fails, --gpus stops rank 1 and exits 1 naming the rank
t_run env RV_CUDA_LIB="$EMU_LIB" RV_EMU_DEVICES=2 timeout 60 rv-train "${COMMON[@]}" --grad-accum 2 --out "$D/nonccl" \
    --device cuda --gpus 2
t_exit gpus_no_nccl 1
t_stderr_has gpus_no_nccl_message 'rank 0 of 2 exited with status 1'
t_eq gpus_no_nccl_cleanup "$(ls -A "$D/nonccl")" ""
