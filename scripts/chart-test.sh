#!/usr/bin/env bash
# Lints, renders and validates charts/warren-controller (scripts/chart-test.py)
# in a Python venv cached under target/ (made once: 7-75 s here, mostly download; reruns ~2 s).
# Needs python3 with venv (Debian: python3-venv, in scripts/deps.sh) and PyPI.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
venv=$target/chart-venv
# Pinned: the Helm Go library (v4, lint/schema/render) and the Kubernetes schemas.
reqs="helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 PyYAML==6.0.4"
if [ "$(cat "$venv/.warren-reqs" 2>/dev/null)" != "$reqs" ]; then
    start=$SECONDS
    rm -rf "$venv"
    python3 -m venv "$venv" || { echo "chart-test: python3 -m venv failed (apt-get install python3-venv)" >&2; exit 1; }
    # shellcheck disable=SC2086
    "$venv/bin/pip" install --disable-pip-version-check -q $reqs
    echo "$reqs" > "$venv/.warren-reqs"
    echo "chart-test: made the venv $venv in $((SECONDS - start))s ($(du -sh "$venv" | cut -f1))"
else
    echo "chart-test: reusing the venv $venv"
fi
exec "$venv/bin/python" "$root/scripts/chart-test.py"
