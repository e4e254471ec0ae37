# lib.sh — helpers for CLI tests (sourced). Each check prints "PASS name" or
# "FAIL name" with the difference. Goldens live in tests/cli/golden/; run a
# test with UPDATE=1 to rewrite them (then review the diff).
#   t_run CMD...            run CMD, keep stdout in $T_OUT, stderr in $T_ERR, status in $T_RC
#   t_exit NAME CODE        the last command exited with CODE
#   t_golden NAME           its stdout equals tests/cli/golden/NAME
#   t_stderr_has NAME STR   its stderr contains STR
#   t_eq NAME GOT WANT      two strings are equal
#   $T_EMU_LIB              the emulated CUDA backend's path (it may not exist)
set -u
T_DIR=$(mktemp -d)
trap 'rm -rf "$T_DIR"' EXIT
T_OUT=$T_DIR/stdout; T_ERR=$T_DIR/stderr; T_RC=0
T_ROOT=${RV_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
T_GOLDEN=$T_ROOT/tests/cli/golden
T_SUITE=$(basename "$0" .sh)
# the CUDA backend built on the CPU emulator (make gpu-emu), for --device cuda tests
T_EMU_LIB=${BUILD:-build}/gpu-emu/librevela-cuda.so
case $T_EMU_LIB in /*) ;; *) T_EMU_LIB=$T_ROOT/$T_EMU_LIB ;; esac

t_run() { "$@" >"$T_OUT" 2>"$T_ERR" </dev/null; T_RC=$?; }
t_run_in() { local in=$1; shift; "$@" <"$in" >"$T_OUT" 2>"$T_ERR"; T_RC=$?; }
t_pass() { echo "PASS $T_SUITE/$1"; }
t_fail() { echo "FAIL $T_SUITE/$1"; shift; printf '  %s\n' "$@"; echo "  stderr: $(head -c 600 "$T_ERR" 2>/dev/null)"; }
t_exit() {
    if [ "$T_RC" -eq "$2" ]; then t_pass "$1"; else t_fail "$1" "expected exit $2, got $T_RC"; fi
}
t_golden() {
    local g=$T_GOLDEN/$1
    if [ "${UPDATE:-0}" = 1 ]; then mkdir -p "$T_GOLDEN"; cp "$T_OUT" "$g"; fi
    if [ ! -f "$g" ]; then t_fail "$1" "missing golden $g (run with UPDATE=1)"; return; fi
    if cmp -s "$T_OUT" "$g"; then t_pass "$1"; else t_fail "$1" "stdout differs from golden:" "$(diff "$g" "$T_OUT" | head -20)"; fi
}
t_stderr_has() {
    if grep -qF -- "$2" "$T_ERR"; then t_pass "$1"; else t_fail "$1" "stderr lacks: $2"; fi
}
t_eq() {
    if [ "$2" = "$3" ]; then t_pass "$1"; else t_fail "$1" "got:  $2" "want: $3"; fi
}
t_files_eq() {
    if cmp -s "$2" "$3"; then t_pass "$1"; else t_fail "$1" "files differ: $2 $3" "$(diff "$2" "$3" | head -10)"; fi
}
