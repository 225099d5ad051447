#!/usr/bin/env bash
# Builds the Python provider (app.py) into a WebAssembly component.
#
#   providers/python-selfhosted/build.sh [OUTPUT.wasm]
#
# Installs componentize-py from PyPI into a private virtual environment
# (target/python-venv; override with LLMHOST_PY_VENV) on first use, then
# componentizes app.py against the project's wit/ (contract 0.2, world
# llm-provider).
# Default output: target/python-plugins/selfhosted.wasm.
set -euo pipefail

COMPONENTIZE_PY_VERSION=0.25.1

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$root/target/python-plugins/selfhosted.wasm}
venv=${LLMHOST_PY_VENV:-$root/target/python-venv}
python=${PYTHON:-python3}

if ! command -v "$python" >/dev/null; then
    echo "error: $python not found; install Python 3.9 or newer (or set PYTHON)" >&2
    exit 1
fi

mkdir -p "$(dirname "$venv")" "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
# Builds running at the same time share the environment: one installs.
exec 9>"$venv.lock"
flock 9
if [ ! -x "$venv/bin/componentize-py" ] ||
    ! "$venv/bin/componentize-py" --version 2>/dev/null | grep -q " $COMPONENTIZE_PY_VERSION\$"; then
    echo "installing componentize-py $COMPONENTIZE_PY_VERSION into $venv" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "componentize-py==$COMPONENTIZE_PY_VERSION"
fi

# Componentized from a copy, so the bytecode componentize-py compiles
# lands beside the copy, not in the source tree.
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp "$here/app.py" "$stage/"
cd "$stage"
tmp="$out.tmp.$$"
"$venv/bin/componentize-py" --wit-path "$root/wit" --world llm-provider \
    componentize app --output "$tmp" >&2
mv "$tmp" "$out"
echo "$out"
