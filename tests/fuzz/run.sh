#!/usr/bin/env bash
# Fuzzes the REST API from its own contract: schemathesis (pinned in requirements.txt, installed
# into target/fuzz-venv) reads GET /openapi.json of a `capstan dev` this script starts and sends
# generated requests, valid and malformed, to every documented operation. It fails on any 5xx, any
# answer whose status, content type, headers or body break the document, and on a node that stops
# answering. /v1/events (an endless SSE stream) is left out.
#
# Usage: tests/fuzz/run.sh [--deep] [CAPSTAN_BIN]
#   default: a bounded run for CI (10 examples per operation, about a minute);
#   --deep:  200 examples per operation (the figures in BENCHMARKS.md).
# FUZZ_SEED=N replays a run (each run prints its seed). One worker: hypothesis parses lambda sources
# with `ast`, which CPython 3.11 does not allow from two threads at once ("AST constructor recursion
# depth mismatch").
# Exit 0: passed; 3: PyPI unreachable, so schemathesis could not be installed (says so); else failed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
examples=10
if [ "${1:-}" = "--deep" ]; then
  examples=200
  shift
fi
bin="${1:-$root/target/debug/capstan}"
venv="$root/target/fuzz-venv"
bash "$root/tests/pyvenv.sh" "$venv" "$here/requirements.txt" || exit $?

work="$(mktemp -d)"
"$bin" dev --no-cell --http 127.0.0.1:0 --grpc 127.0.0.1:0 --data-dir "$work/data" >"$work/stdout" 2>"$work/stderr" &
pid=$!
trap 'kill -9 "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
deadline=$((SECONDS + 60))
until grep -q '^capstan: ready' "$work/stdout"; do
  if ! kill -0 "$pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
    echo "FUZZ FAILED: capstan dev did not start" >&2
    cat "$work/stderr" >&2
    exit 1
  fi
  sleep 0.1
done
http="$(sed -n 's/^capstan: http=//p' "$work/stdout")"
seed="${FUZZ_SEED:-$RANDOM$RANDOM}"
echo "fuzzing http://$http with $examples examples per operation, seed $seed (FUZZ_SEED=$seed replays it)"

status=0
"$venv/bin/st" run "http://$http/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing \
  --max-examples "$examples" \
  --exclude-path /v1/events \
  --workers 1 \
  --seed "$seed" \
  --request-timeout 25 \
  --no-color || status=$?

# The node must still answer, and must not have died on the way.
if ! kill -0 "$pid" 2>/dev/null; then
  echo "FUZZ FAILED: the node exited during the run" >&2
  tail -50 "$work/stderr" >&2
  exit 1
fi
if ! python3 -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://$http/healthz', timeout=10).status == 200 else 1)"; then
  echo "FUZZ FAILED: the node stopped answering /healthz" >&2
  exit 1
fi
if [ "$status" -ne 0 ]; then
  echo "FUZZ FAILED: schemathesis found failures (seed $seed; see above)" >&2
  exit "$status"
fi
echo "fuzz passed (seed $seed)"
