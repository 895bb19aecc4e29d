#!/usr/bin/env bash
# Makes VENV hold the pinned packages of REQUIREMENTS (a pip requirements file; comment lines and
# `name==version` lines), installing them from PyPI when they are not there yet.
# Usage: tests/pyvenv.sh VENV REQUIREMENTS. Exit 0: ready; 3: PyPI unreachable (says so); else failed.
set -euo pipefail
venv="$1"
requirements="$2"
pins="$(grep -v '^\s*#' "$requirements" | grep -v '^\s*$' | sort)"
if [ -x "$venv/bin/pip" ] && [ -z "$(comm -23 <(echo "$pins") <("$venv/bin/pip" freeze 2>/dev/null | sort))" ]; then
  exit 0
fi
python3 -m venv "$venv"
if ! "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"; then
  if ! python3 -c 'import urllib.request; urllib.request.urlopen("https://pypi.org/simple/", timeout=10)' 2>/dev/null; then
    echo "PyPI is unreachable: cannot install $(echo $pins)" >&2
    exit 3
  fi
  echo "installing $(echo $pins) into $venv failed" >&2
  exit 1
fi
