#!/bin/bash
# rv-cat: JSONL <-> stream round trips, --info, and every error path's exit status.
. "$(dirname "$0")/lib.sh"
F=$T_ROOT/tests/fixtures/cat
D=$T_DIR

# round trip of canonical JSONL is byte-exact
t_run rv-cat --encode doc -o "$D/docs.rvs" "$F/docs.jsonl"; t_exit encode_doc 0
t_run rv-cat "$D/docs.rvs"; t_exit decode_doc 0
t_files_eq round_trip_bytes "$T_OUT" "$F/docs.jsonl"
t_eq no_part_left "$(ls "$D" | grep -c '\.part$')" 0

# stdin/stdout pipeline, and "-" as a file name
rv-cat --encode doc < "$F/docs.jsonl" | rv-cat - > "$D/pipe.jsonl"
t_files_eq pipe_round_trip "$D/pipe.jsonl" "$F/docs.jsonl"

# variants: "id" key, missing title, \u escapes, extra fields ignored, blank lines skipped
head -3 "$F/docs-variants.jsonl" | rv-cat --encode doc | rv-cat > "$T_OUT"
t_golden rv-cat.variants

# a 1 MB text with every escape survives
python3 -c '
import json, random
random.seed(7)
alphabet = [chr(c) for c in range(1, 0x250)] + ["\u2028", "\u00a0", "👩\u200d💻", "中", "\\\\", "\""]
text = "".join(random.choice(alphabet) for _ in range(700000))
print(json.dumps({"_id": "big", "title": "t" * 1000, "text": text}, ensure_ascii=False, separators=(",", ":")))
' > "$D/big.jsonl"
rv-cat --encode doc "$D/big.jsonl" | rv-cat > "$D/big.out"
t_files_eq big_round_trip "$D/big.out" "$D/big.jsonl"
t_eq big_is_1mb "$(($(wc -c < "$D/big.jsonl") > 1000000))" 1

# --info
t_run rv-cat --info "$D/docs.rvs"; t_exit info 0
sed "s|$D/||" "$T_OUT" > "$D/info"; cp "$D/info" "$T_OUT"; t_golden rv-cat.info

# other kinds round-trip through JSON
for kind in chunk group emb run; do
    rv-cat --encode $kind "$F/$kind.jsonl" | rv-cat > "$D/$kind.out"
    t_files_eq "round_trip_$kind" "$D/$kind.out" "$F/$kind.jsonl"
done
rv-cat --encode emb --dtype bf16 "$F/emb.jsonl" | rv-cat > "$T_OUT"; t_golden rv-cat.emb-bf16

# empty input gives a valid empty stream
t_run_in /dev/null rv-cat --encode doc -o "$D/empty.rvs"; t_exit empty_encode 0
t_run rv-cat "$D/empty.rvs"; t_exit empty_decode 0
t_eq empty_output "$(wc -c < "$T_OUT")" 0

# --- errors: data errors exit 1, usage errors exit 2 ---
t_run rv-cat --encode doc "$F/docs-variants.jsonl"; t_exit null_title_exit 1
t_stderr_has null_title_msg "docs-variants.jsonl:4: title: expected a string, found null"
printf '{"_id":"x","text":"a"}\n{"_id":"y","text":"b"\n' > "$D/bad.jsonl"
t_run rv-cat --encode doc -o "$D/bad.rvs" "$D/bad.jsonl"; t_exit bad_json_exit 1
t_stderr_has bad_json_msg "bad.jsonl:2: offset 21: expected ',' or '}' in an object"
t_eq bad_json_no_output "$(ls "$D" | grep -c '^bad.rvs')" 0
printf '{"title":"no id","text":"a"}\n' > "$D/noid.jsonl"
t_run rv-cat --encode doc "$D/noid.jsonl"; t_exit no_id_exit 1
t_stderr_has no_id_msg 'noid.jsonl:1: _id: expected a string field "_id" or "id"'
printf '[1,2]\n' > "$D/arr.jsonl"
t_run rv-cat --encode doc "$D/arr.jsonl"; t_stderr_has not_object_msg "arr.jsonl:1: expected a JSON object, found an array"

t_run rv-cat "$F/docs.jsonl"; t_exit text_as_stream_exit 1
t_stderr_has text_as_stream_msg "not a revela stream: expected zstd-compressed data"
head -c 40 "$D/docs.rvs" > "$D/trunc.rvs"
t_run rv-cat "$D/trunc.rvs"; t_exit truncated_exit 1
t_stderr_has truncated_msg "truncated stream"
cat "$D/docs.rvs" "$D/docs.rvs" > "$D/twice.rvs"
t_run rv-cat "$D/twice.rvs"; t_exit concatenated_exit 1
t_stderr_has concatenated_msg "concatenated streams are not supported"
t_run rv-cat "$D/missing.rvs"; t_exit missing_file_exit 1
t_stderr_has missing_file_msg "missing.rvs: cannot open: No such file or directory"

t_run rv-cat --encode nosuchkind; t_exit unknown_kind_exit 2
t_stderr_has unknown_kind_msg 'unknown kind "nosuchkind"'
t_run rv-cat --bogus; t_exit unknown_option_exit 2
t_run rv-cat --encode; t_exit missing_arg_exit 2
t_stderr_has missing_arg_msg "option '--encode' requires an argument"
t_run rv-cat --info --encode doc; t_exit info_encode_exit 2
t_run rv-cat --dtype f16; t_exit dtype_without_emb_exit 2
t_run rv-cat --encode emb --dtype f64; t_exit bad_dtype_exit 2
t_run rv-cat --help; t_exit help_exit 0
t_eq help_stdout "$(head -1 "$T_OUT")" "Usage: rv-cat [OPTION]... [FILE]..."
t_run rv-cat --version; t_exit version_exit 0
t_stderr_has_none() { if [ -s "$T_ERR" ]; then t_fail "$1" "unexpected stderr"; else t_pass "$1"; fi; }
t_stderr_has_none version_quiet

# refusing binary output to a terminal needs a tty: use script(1) when present
if command -v script >/dev/null; then
    script -qec "rv-cat --encode doc $F/docs.jsonl" /dev/null > "$D/tty.out" 2>&1 </dev/null
    if grep -q "refusing to write a binary stream to a terminal" "$D/tty.out"; then t_pass tty_refused; else t_fail tty_refused "$(head -c 300 "$D/tty.out")"; fi
    script -qec "rv-cat -f --encode doc $F/docs.jsonl | wc -c" /dev/null > "$D/tty.out" 2>&1 </dev/null
    if ! grep -q refusing "$D/tty.out"; then t_pass tty_forced; else t_fail tty_forced "$(cat "$D/tty.out")"; fi
fi

# a killed writer leaves no file under the real name
mkfifo "$D/fifo"
( rv-cat --encode doc -o "$D/killed.rvs" "$D/fifo" & echo $! > "$D/pid"; wait ) 2>/dev/null &
exec 3>"$D/fifo"; cat "$F/docs.jsonl" >&3; sleep 0.3
kill -TERM "$(cat "$D/pid")" 2>/dev/null; exec 3>&-; wait 2>/dev/null
t_eq killed_no_final "$(ls "$D" | grep -c '^killed.rvs$')" 0
t_eq killed_no_part "$(ls "$D" | grep -c '^killed.rvs.part$')" 0
