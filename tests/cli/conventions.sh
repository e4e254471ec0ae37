#!/bin/bash
# conventions: every tool honours the suite's CLI conventions (--help to stdout
# with exit 0, --version, unknown option -> exit 2 with a hint), and every man
# page renders without warnings and has the required sections.
. "$(dirname "$0")/lib.sh"
for tool in "$T_ROOT/$BIN"/rv-*; do
    name=$(basename "$tool")
    t_run "$tool" --help; t_exit "$name.help_exit" 0
    if [ -s "$T_OUT" ] && [ ! -s "$T_ERR" ]; then t_pass "$name.help_on_stdout"; else t_fail "$name.help_on_stdout" "help not on stdout alone"; fi
    t_run "$tool" --version; t_exit "$name.version_exit" 0
    t_eq "$name.version_text" "$(cut -d' ' -f1-2 "$T_OUT")" "$name (revela)"
    t_run "$tool" --no-such-option; t_exit "$name.bad_option_exit" 2
    t_stderr_has "$name.bad_option_prefix" "$name: "
    if [ -f "$T_ROOT/man/$name.1" ]; then t_pass "$name.has_man_page"; else t_fail "$name.has_man_page" "man/$name.1 missing"; fi
done
for page in "$T_ROOT"/man/*.[157]; do
    name=$(basename "$page")
    warn=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
    t_eq "man.$name.no_warnings" "$warn" ""
    missing=""
    case "$name" in
    *.1) need="NAME SYNOPSIS DESCRIPTION OPTIONS EXIT\ STATUS EXAMPLES SEE\ ALSO" ;;
    *) need="NAME DESCRIPTION SEE\ ALSO" ;;
    esac
    for s in NAME SYNOPSIS DESCRIPTION OPTIONS "EXIT STATUS" EXAMPLES "SEE ALSO"; do
        case "$need" in *"${s// /\\ }"*|*"$s"*) grep -q "^\.SH \"\?$s\"\?" "$page" || missing="$missing [$s]";; esac
    done
    t_eq "man.$name.sections" "$missing" ""
done
