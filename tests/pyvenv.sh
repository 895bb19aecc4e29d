#!/usr/bin/env bash
# Makes VENV hold the pinned packages of REQUIREMENTS (a pip requirements file; comment lines and
# `name==version` lines), installing them from PyPI when they are not there yet.
# Usage: tests/pyvenv.sh VENV REQUIREMENTS. Exit 0: ready; 3: cannot be made here — PyPI unreachable,
# or python3 without its venv module where python3-venv cannot be installed (says which); else failed.
# PYVENV_NO_INSTALL=1: never apt-get install (the test of the skip path sets it).
set -euo pipefail
venv="$1"
requirements="$2"
pins="$(grep -v '^\s*#' "$requirements" | grep -v '^\s*$' | sort)"
if [ -x "$venv/bin/pip" ] && [ -z "$(comm -23 <(echo "$pins") <("$venv/bin/pip" freeze 2>/dev/null | sort))" ]; then
  exit 0
fi
# Debian splits venv (with ensurepip) out of python3: install python3-venv where we may, else skip.
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  if [ -z "${PYVENV_NO_INSTALL:-}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null) || true
  fi
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    echo "SKIPPED: python3 has no venv module (Debian: apt-get install python3-venv): cannot install $(echo $pins)" >&2
    exit 3
  fi
fi
if ! python3 -m venv "$venv"; then
  echo "python3 -m venv $venv failed" >&2
  exit 1
fi
if ! "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"; then
  if ! python3 -c 'import urllib.request; urllib.request.urlopen("https://pypi.org/simple/", timeout=10)' 2>/dev/null; then
    echo "PyPI is unreachable: cannot install $(echo $pins)" >&2
    exit 3
  fi
  echo "installing $(echo $pins) into $venv failed" >&2
  exit 1
fi
