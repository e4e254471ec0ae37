# venv.sh — source this to get the reference-check virtualenv (.venv at the
# repository root) with scripts/requirements-ref.txt installed. Creating it
# needs PyPI; later calls reuse it. Sets RV_VENV_OK=1 on success.
_rv_root=${RV_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
_rv_req=$_rv_root/scripts/requirements-ref.txt
_rv_venv=$_rv_root/.venv
RV_VENV_OK=0
if [ ! -f "$_rv_venv/.installed" ] || ! cmp -s "$_rv_req" "$_rv_venv/.installed"; then
    python3 -m venv "$_rv_venv" >&2 &&
    "$_rv_venv/bin/pip" install -q --disable-pip-version-check -r "$_rv_req" >&2 &&
    cp "$_rv_req" "$_rv_venv/.installed"
fi
if [ -f "$_rv_venv/.installed" ]; then
    . "$_rv_venv/bin/activate"
    RV_VENV_OK=1
fi
