#!/usr/bin/env bash
# Installs the pinned Python CF client into a virtualenv for tests/tests/cf_python_client.rs.
# Usage: setup.sh VENV_DIR. Exit 0: ready; exit 3: PyPI cannot be reached (the test skips, saying
# so); any other failure is a real one.
set -euo pipefail
venv="$1"
here="$(cd "$(dirname "$0")" && pwd)"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import cloudfoundry_client' 2>/dev/null; then
  exit 0
fi
python3 -m venv "$venv"
if ! "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"; then
  if ! python3 -c 'import urllib.request; urllib.request.urlopen("https://pypi.org/simple/", timeout=10)' 2>/dev/null; then
    echo "PyPI is unreachable: cannot install cloudfoundry-client" >&2
    exit 3
  fi
  exit 1
fi
