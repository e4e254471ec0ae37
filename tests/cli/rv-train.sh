#!/bin/bash
# rv-train CLI tests on the tiny llama fixture (random weights, byte-level
# tokenizer): a run from a group stream and from the Revela JSONL format;
# resume — 4 steps in one go equal 2 steps, stop, resume, 2 steps (same
# losses in log.jsonl, same adapter and checkpoint bytes); a SIGKILL in the
# middle of writing a checkpoint leaves the previous one usable and the
# resumed run still equals the uninterrupted one; the written retriever
# adapter loads in rv-encode and changes the embeddings; refusals and usage
# errors. Wiring against revela_step_ref, adapter keys and checkpoint
# files in detail: tests/unit/test_train_cli.c, test_peft_write.c,
# test_checkpoint.c.
. "$(dirname "$0")/lib.sh"
FX=$T_ROOT/tests/fixtures
D=$T_DIR
M=$FX/model/llama_tied
rv-cat --encode chunk -o "$D/c.rvs" "$FX/bm25/adi-chunks.jsonl" && rv-bm25group -q -g 4 -o "$D/g.rvs" "$D/c.rvs" 2>/dev/null ||
    { echo "FAIL rv-train/setup"; exit 1; }
COMMON=(--model "$M" --groups "$D/g.rvs" --lora-rank 4 --lora-alpha 8 --grad-accum 2 --max-steps 4 --warmup 2
        --lr 1e-2 --max-len 24 --save-every 2 --tau 0.05 -t 2)
# the deterministic columns of log.jsonl (times and rates vary)
losses() { sed 's/,"tokens_per_s".*,"mean_max_w"/,"mean_max_w"/' "$1"; }

t_run rv-train "${COMMON[@]}" --out "$D/full"; t_exit full_run 0
t_stderr_has prints_hparams '"lora_rank":4,"lora_alpha":8,'
t_stderr_has progress_line "rv-train: step 4/4 loss"
t_eq log_lines "$(wc -l < "$D/full/log.jsonl")" 4
for f in retriever/adapter_model.safetensors retriever/adapter_config.json lm/adapter_model.safetensors \
         lm/adapter_config.json checkpoint/state.safetensors hparams.json; do
    [ -s "$D/full/$f" ] || t_fail "output_$f" "missing $D/full/$f"
done
t_eq no_tmp_left "$(ls "$D/full")" "$(printf 'checkpoint\nhparams.json\nlm\nlog.jsonl\nmemory.json\nretriever')"
grep -Eq '^\{"weights_bytes":[1-9][0-9]*,"trainable_bytes":[1-9][0-9]*,"parameters_bytes":[1-9][0-9]*,"gradients_bytes":[1-9][0-9]*,"optimizer_bytes":[1-9][0-9]*,"activations_peak_bytes":[1-9][0-9]*\}$' \
    "$D/full/memory.json"; T_RC=$?; t_exit memory_breakdown 0
# the parameter bytes are the adapters' fp32 element count, read from the
# safetensors headers; the parts add up to trainable_bytes
t_eq memory_parameters_match_adapters "$(python3 -c '
import json, struct, sys
n = 0
for f in sys.argv[1:]:
    with open(f, "rb") as fh:
        hdr = json.loads(fh.read(struct.unpack("<Q", fh.read(8))[0]))
    for k, v in hdr.items():
        if k != "__metadata__":
            e = 1
            for d in v["shape"]: e *= d
            n += e
m = json.load(open(sys.argv[1].rsplit("/", 2)[0] + "/memory.json"))
print(n * 4 == m["parameters_bytes"], m["parameters_bytes"] + m["gradients_bytes"] + m["optimizer_bytes"] == m["trainable_bytes"])
' "$D/full/retriever/adapter_model.safetensors" "$D/full/lm/adapter_model.safetensors")" "True True"
# the loss moves once the learning rate is non-zero (steps 1-2 run at lr 0 under log warm-up)
t_eq lr_schedule "$(sed 's/.*"lr":\([^,]*\),.*/\1/' "$D/full/log.jsonl" | tr '\n' ' ')" "0 0 0.01 0.01 "
grep -q '"task_type": "FEATURE_EXTRACTION"' "$D/full/retriever/adapter_config.json" &&
    grep -q '"task_type": "CAUSAL_LM"' "$D/full/lm/adapter_config.json"; T_RC=$?; t_exit task_types 0
grep -aq 'base_model.model.layers.0.self_attn.q_proj.lora_A.weight' "$D/full/retriever/adapter_model.safetensors" &&
    grep -aq 'base_model.model.model.layers.1.mlp.down_proj.lora_B.weight' "$D/full/lm/adapter_model.safetensors"
T_RC=$?; t_exit peft_key_prefixes 0

# --- resume: 2 + 2 steps == 4 steps, bit for bit
t_run rv-train "${COMMON[@]}" --out "$D/split" --stop-after 2; t_exit split_first_half 0
t_eq split_log_lines "$(wc -l < "$D/split/log.jsonl")" 2
t_run rv-train "${COMMON[@]}" --out "$D/split" --resume; t_exit split_resume 0
t_eq resume_same_losses "$(losses "$D/split/log.jsonl")" "$(losses "$D/full/log.jsonl")"
t_files_eq resume_same_retriever "$D/split/retriever/adapter_model.safetensors" "$D/full/retriever/adapter_model.safetensors"
t_files_eq resume_same_lm "$D/split/lm/adapter_model.safetensors" "$D/full/lm/adapter_model.safetensors"
t_files_eq resume_same_checkpoint "$D/split/checkpoint/state.safetensors" "$D/full/checkpoint/state.safetensors"

# --- --recompute (LoRA dropout on): the same run bit for bit, and a smaller activation peak
t_run rv-train "${COMMON[@]}" --out "$D/recompute" --recompute; t_exit recompute_run 0
t_eq recompute_same_losses "$(losses "$D/recompute/log.jsonl" | sed 's/,"activations_mb".*//')" \
    "$(losses "$D/full/log.jsonl" | sed 's/,"activations_mb".*//')"
t_files_eq recompute_same_retriever "$D/recompute/retriever/adapter_model.safetensors" \
    "$D/full/retriever/adapter_model.safetensors"
t_files_eq recompute_same_lm "$D/recompute/lm/adapter_model.safetensors" "$D/full/lm/adapter_model.safetensors"
act() { sed 's/.*"activations_peak_bytes":\([0-9]*\).*/\1/' "$1/memory.json"; }
t_eq recompute_less_memory "$(awk -v a="$(act "$D/recompute")" -v b="$(act "$D/full")" 'BEGIN {print (a < b) ? "yes" : "no: " a " vs " b}')" yes

# --- SIGKILL while the step-4 checkpoint is written (new files complete, not yet renamed)
# (run as a background job so the shell does not report the kill on stderr)
RV_TRAIN_TEST_CRASH_AT=4 rv-train "${COMMON[@]}" --out "$D/crash" >"$T_OUT" 2>"$T_ERR" </dev/null &
{ wait $!; } 2>/dev/null; T_RC=$?; t_exit crash_killed 137
t_eq crash_tmp_left "$([ -d "$D/crash/checkpoint.tmp" ] && [ -d "$D/crash/checkpoint" ] && echo yes)" yes
t_run rv-train "${COMMON[@]}" --out "$D/crash" --resume; t_exit crash_resume 0
t_stderr_has crash_resumed_at_2 "steps 3..4"
t_eq crash_same_losses "$(losses "$D/crash/log.jsonl")" "$(losses "$D/full/log.jsonl")"
t_files_eq crash_same_retriever "$D/crash/retriever/adapter_model.safetensors" "$D/full/retriever/adapter_model.safetensors"

# --- refusals
t_run rv-train "${COMMON[@]}" --out "$D/full"; t_exit refuses_existing_checkpoint 1
t_stderr_has refuses_existing_message "already holds a checkpoint; use --resume"
t_run rv-train "${COMMON[@]}" --out "$D/full" --resume --lora-alpha 16; t_exit resume_other_hparams 1
t_stderr_has resume_other_hparams_message "hyper-parameters differ"
t_run rv-train "${COMMON[@]}" --out "$D/none" --resume; t_exit resume_without_checkpoint 1

# --- the adapter loads in rv-encode and changes the embeddings
t_run rv-encode -m "$M" -o "$D/base.emb" "$FX/model/tiny_texts.jsonl"; t_exit encode_base 0
t_run rv-encode -m "$M" --adapter "$D/full/retriever" -o "$D/adapted.emb" "$FX/model/tiny_texts.jsonl"
t_exit encode_with_adapter 0
if cmp -s "$D/base.emb" "$D/adapted.emb"; then t_fail adapter_changes_embeddings "same bytes"; else t_pass adapter_changes_embeddings; fi

# --- the original JSONL batch format (a list per line, or {"src", "text"})
t_run rv-train --model "$M" --from-jsonl "$FX/train/tiny_groups.jsonl" --out "$D/jsonl" --lora-rank 2 \
    --grad-accum 5 --epochs 2 --max-len 16 --lora-targets q,v -q
t_exit jsonl_run 0
t_eq jsonl_steps "$(wc -l < "$D/jsonl/log.jsonl")" 2
t_eq jsonl_targets "$(grep -o '"target_modules": \[[^]]*\]' "$D/jsonl/lm/adapter_config.json")" \
    '"target_modules": ["q_proj", "v_proj"]'

# --- --dual-loss: the objective adds pass A's own loss (both logged)
t_run rv-train "${COMMON[@]}" --out "$D/dual" --max-steps 1 --dual-loss -q; t_exit dual_run 0
t_eq dual_loss_is_sum "$(sed 's/.*"loss":\([^,]*\),"loss_plain":\([^,]*\),.*/\1 \2/' "$D/dual/log.jsonl" |
    awk '{print ($1 > $2 + 1) ? "yes" : "no: " $0}')" yes
grep -q '"dual_loss":true' "$D/dual/hparams.json"; T_RC=$?; t_exit dual_in_hparams 0

# --- --objective lm: LoRA on the LM only, then every parameter (--full)
LMO=(--model "$M" --groups "$D/g.rvs" --objective lm --grad-accum 1 --max-len 24 --warmup 1
     --warmup-shape linear --save-every 3 -t 2 -q)
t_run rv-train "${LMO[@]}" --lora-rank 4 --lora-alpha 8 --lr 1e-2 --max-steps 3 --out "$D/lm"; t_exit lm_lora_run 0
t_eq lm_lora_outputs "$(ls "$D/lm")" "$(printf 'checkpoint\nhparams.json\nlm\nlog.jsonl\nmemory.json')"
t_eq lm_lora_loss_is_plain "$(sed 's/.*"loss":\([^,]*\),"loss_plain":\([^,]*\),.*/\1 \2/' "$D/lm/log.jsonl" |
    awk '$1 != $2' | wc -l)" 0
# learning rate 0: the written model must encode exactly like the base (names, layout and values survive)
t_run rv-train "${LMO[@]}" --full --lr 0 --max-steps 1 --out "$D/lm0"; t_exit lm_full_lr0_run 0
t_eq lm_full_outputs "$(ls "$D/lm0/model")" \
    "$(printf 'config.json\ngeneration_config.json\nmodel.safetensors\ntokenizer.json')"
t_run rv-encode -m "$D/lm0/model" -o "$D/lm0.emb" "$FX/model/tiny_texts.jsonl"; t_exit lm_full_encodes 0
t_run rv-encode -m "$M" -o "$D/base0.emb" "$FX/model/tiny_texts.jsonl"
"$BIN/rv-cat" "$D/lm0.emb" > "$D/lm0.jsonl"; "$BIN/rv-cat" "$D/base0.emb" > "$D/base0.jsonl"
t_files_eq lm_full_lr0_same_embeddings "$D/lm0.jsonl" "$D/base0.jsonl"
# every parameter trained: 6 steps on the same 3 groups (2 epochs) bring the loss down, and resume is exact
t_run rv-train "${LMO[@]}" --full --lr 3e-3 --max-steps 6 --out "$D/lmf"; t_exit lm_full_run 0
t_eq lm_full_learns "$(sed 's/.*"loss":\([^,]*\),.*/\1/' "$D/lmf/log.jsonl" | awk 'NR == 1 {a = $1} END {print ($1 < a - 0.5) ? "yes" : "no: " a " -> " $1}')" yes
t_run rv-train "${LMO[@]}" --full --lr 3e-3 --max-steps 6 --out "$D/lmf2" --stop-after 3; t_exit lm_full_split 0
t_run rv-train "${LMO[@]}" --full --lr 3e-3 --max-steps 6 --out "$D/lmf2" --resume; t_exit lm_full_resume 0
t_files_eq lm_full_resume_same_model "$D/lmf2/model/model.safetensors" "$D/lmf/model/model.safetensors"
t_run rv-train "${LMO[@]}" --full --lr 3e-3 --max-steps 6 --out "$D/lmf3" --recompute; t_exit lm_full_recompute 0
t_files_eq lm_full_recompute_same_model "$D/lmf3/model/model.safetensors" "$D/lmf/model/model.safetensors"
t_run rv-train "${LMO[@]}" --model "$D/lmf/model" --lora-rank 2 --max-steps 1 --lr 1e-3 --out "$D/lmf_lora"
t_exit trained_model_loads_as_base 0
# --init: a random model of a given shape, the same for the same seed
printf '{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":16,"intermediate_size":24,
"num_attention_heads":2,"num_key_value_heads":1,"num_hidden_layers":2,"vocab_size":%s,"rms_norm_eps":1e-5,
"rope_theta":10000.0,"tie_word_embeddings":true,"max_position_embeddings":64,"bos_token_id":1,"eos_token_id":2}\n' \
    "$(grep -o '"vocab_size": *[0-9]*' "$M/config.json" | grep -o '[0-9]*$')" > "$D/init.json"
INIT=(--init "$D/init.json" --tokenizer "$M/tokenizer.json" --groups "$D/g.rvs" --objective lm --max-steps 2
      --grad-accum 1 --max-len 16 --lr 1e-3 --warmup 0 -q -t 2)
t_run rv-train "${INIT[@]}" --out "$D/init1"; t_exit init_run 0
t_run rv-train "${INIT[@]}" --out "$D/init2"; t_exit init_run_again 0
t_files_eq init_deterministic "$D/init1/model/model.safetensors" "$D/init2/model/model.safetensors"
t_run rv-encode -m "$D/init1/model" -o "$D/init.emb" "$FX/model/tiny_texts.jsonl"; t_exit init_model_encodes 0
t_eq init_first_loss_near_uniform "$(head -1 "$D/init1/log.jsonl" | sed 's/.*"loss":\([^,]*\),.*/\1/' |
    awk -v v="$(grep -o '"vocab_size": *[0-9]*' "$M/config.json" | grep -o '[0-9]*$')" \
    '{d = $1 - log(v); print (d < 0.1 && d > -0.1) ? "yes" : "no: " $1 " vs log(vocab) " log(v)}')" yes

# --- usage errors
t_run rv-train "${COMMON[@]}" --out "$D/x" --full; t_exit full_needs_objective_lm 2
t_run rv-train "${LMO[@]}" --out "$D/x" --dual-loss; t_exit dual_needs_revela 2
t_run rv-train "${LMO[@]}" --model "$FX/model/llama_tied.gguf" --full --out "$D/x"; t_exit full_needs_hf_dir 2
t_stderr_has full_needs_hf_dir_message "Hugging Face directory"
t_run rv-train --init "$D/init.json" --groups "$D/g.rvs" --objective lm --out "$D/x"; t_exit init_needs_tokenizer 2
t_run rv-train --help; t_exit help 0
t_run rv-train --out "$D/x" --groups "$D/g.rvs"; t_exit needs_model 2
t_run rv-train --model "$M" --out "$D/x" --groups "$D/g.rvs" --from-jsonl x; t_exit one_input 2
t_run rv-train --model "$M" --out "$D/x" --groups "$D/g.rvs" --first-half maybe; t_exit bad_first_half 2
t_run rv-train --model "$M" --out "$D/x" --groups "$D/g.rvs" --lora-targets q,lm_head; t_exit bad_targets 2
t_run rv-train --model "$M" --out "$D/x" --groups "$D/g.rvs" --frobnicate; t_exit bad_option 2
t_run rv-train --model "$M" --out "$D/x" --groups "$D/c.rvs"; t_exit wrong_stream_kind 1
t_stderr_has wrong_stream_kind_message "group"
