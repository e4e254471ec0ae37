#!/bin/bash
# make-demo-corpus.sh — real training text found on any Debian machine: the
# rendered manual pages of section 1 (DESCRIPTION-first prose about programs),
# written as BEIR corpus JSONL ({"_id","title","text"}) on standard output.
# The evaluation collections (../shared/collections) are library-science and
# newspaper abstracts, so this text is disjoint from them.
#   scripts/make-demo-corpus.sh [N]   N pages (default 300), chosen by a fixed
#                                     stride over the sorted page list
set -euo pipefail
n=${1:-300}
pages=$(find /usr/share/man/man1 -name '*.1.gz' | LC_ALL=C sort)
total=$(echo "$pages" | wc -l)
if [ "$total" -lt 1 ]; then echo "make-demo-corpus: no manual pages in /usr/share/man/man1" >&2; exit 1; fi
stride=$(( total > n ? total / n : 1 ))
echo "$pages" | awk -v s="$stride" -v n="$n" '(NR - 1) % s == 0 && c < n {print; c++}' |
while read -r page; do
    name=$(basename "$page" .1.gz)
    # render without formatting; drop the header/footer lines and blank runs
    text=$(MANWIDTH=1000 man --nh --nj -P cat -l "$page" 2>/dev/null | col -b | sed -e '1d' -e '$d' | tr -s ' \n' || true)
    [ "${#text}" -ge 400 ] || continue
    NAME="$name" python3 -c 'import json, os, sys
print(json.dumps({"_id": os.environ["NAME"], "title": os.environ["NAME"], "text": sys.stdin.read().strip()}, ensure_ascii=False))' <<<"$text"
done
