#!/usr/bin/env bash
# Installs the pinned Python CF client into a virtualenv for tests/tests/cf_python_client.rs.
# Usage: setup.sh VENV_DIR. Exit 0: ready; exit 3: PyPI cannot be reached (the test skips, saying
# so); any other failure is a real one.
set -euo pipefail
venv="$1"
here="$(cd "$(dirname "$0")" && pwd)"
exec bash "$here/../pyvenv.sh" "$venv" "$here/requirements.txt"
