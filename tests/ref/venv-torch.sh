# venv-torch.sh — source this (or run it) to get the PyTorch peer's virtualenv:
# .venv-torch at the repository root, made by /usr/bin/python3 with
# --system-site-packages so that Debian's python3-torch 1.13.1
# (scripts/deps.sh --torch) is the torch it uses, plus
# scripts/requirements-torch.txt from PyPI (installed with --no-deps: see
# that file). Later calls reuse it; it is rebuilt when the requirements
# change. On success sets RV_TORCH_VENV_OK=1 and RV_TORCH_PYTHON to its
# python; otherwise RV_TORCH_VENV_OK=0 and RV_TORCH_VENV_WHY says why.
# Does not activate the venv (the callers run $RV_TORCH_PYTHON).
_rvt_root=${RV_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
_rvt_req=$_rvt_root/scripts/requirements-torch.txt
_rvt_venv=$_rvt_root/.venv-torch
RV_TORCH_VENV_OK=0
RV_TORCH_VENV_WHY=
if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    RV_TORCH_VENV_WHY="/usr/bin/python3 has no torch (install Debian's python3-torch: scripts/deps.sh --torch)"
elif ! /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null; then
    RV_TORCH_VENV_WHY="/usr/bin/python3 cannot make a venv (install python3-venv: scripts/deps.sh --torch)"
else
    if [ ! -f "$_rvt_venv/.installed" ] || ! cmp -s "$_rvt_req" "$_rvt_venv/.installed"; then
        echo "venv-torch.sh: creating $_rvt_venv (PyPI: scripts/requirements-torch.txt)" >&2
        rm -rf "$_rvt_venv"
        /usr/bin/python3 -m venv --system-site-packages "$_rvt_venv" >&2 &&
            "$_rvt_venv/bin/pip" install -q --disable-pip-version-check --no-deps -r "$_rvt_req" >&2 &&
            cp "$_rvt_req" "$_rvt_venv/.installed"
    fi
    if [ ! -f "$_rvt_venv/.installed" ]; then
        RV_TORCH_VENV_WHY="creating $_rvt_venv failed (no PyPI access?)"
    elif ! "$_rvt_venv/bin/python" -c 'import torch, transformers, peft' 2>/dev/null; then
        RV_TORCH_VENV_WHY="$_rvt_venv cannot import torch + transformers + peft"
    else
        RV_TORCH_VENV_OK=1
        RV_TORCH_PYTHON=$_rvt_venv/bin/python
    fi
fi
# Run directly (tests/run.sh --ref runs every tests/ref/*.sh, this one too):
# create or check the venv and say so on stderr; never a test failure by itself.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    if [ "$RV_TORCH_VENV_OK" = 1 ]; then echo "venv-torch.sh: ready: $RV_TORCH_PYTHON" >&2
    else echo "venv-torch.sh: not available: $RV_TORCH_VENV_WHY" >&2; fi
    exit 0
fi
