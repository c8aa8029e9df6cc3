#!/usr/bin/env bash
# Creates (once) the Python virtualenv the tests use for Kubernetes' official Python
# client: /var/tmp/strata-venv (override with STRATA_VENV), `kubernetes` from PyPI.
set -euo pipefail
venv=${STRATA_VENV:-/var/tmp/strata-venv}
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import kubernetes' 2>/dev/null; then
  exit 0
fi
echo "strata: installing the Python kubernetes client into $venv" >&2
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check 'kubernetes>=31'
