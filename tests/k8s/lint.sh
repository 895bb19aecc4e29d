#!/usr/bin/env bash
# Lints the Kubernetes manifests (deploy/k8s/*.yaml): every object validated strictly against
# Kubernetes' own schemas (kubernetes-validate, pinned, installed into target/k8s-venv), and every
# `--flag` a container passes to capstan is one that its mode accepts (asked of the binary).
# Usage: tests/k8s/lint.sh [CAPSTAN_BIN]. Exit 0: clean; 3: PyPI unreachable (says so); else failed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${1:-$root/target/debug/capstan}"
venv="$root/target/k8s-venv"
bash "$root/tests/pyvenv.sh" "$venv" "$here/requirements.txt" || exit $?
"$venv/bin/kubernetes-validate" --strict --quiet "$root"/deploy/k8s/*.yaml
"$venv/bin/python" - "$bin" "$root"/deploy/k8s/*.yaml <<'PY'
import re, subprocess, sys, yaml
binary, files = sys.argv[1], sys.argv[2:]
bad = []
for f in files:
    for doc in yaml.safe_load_all(open(f)):
        spec = (doc or {}).get("spec", {}).get("template", {}).get("spec", {})
        for c in spec.get("containers", []):
            words = " ".join(c.get("command", []) + c.get("args", [])).split()
            words = [w for w in words if not w.startswith("/")] or words
            mode = next(w for w in words if not w.startswith("-") and w not in ("exec",))
            if mode not in ("server", "gateway", "cell", "dev"):
                mode = next(w for w in words if w in ("server", "gateway", "cell", "dev"))
            helptext = subprocess.run([binary, mode, "--help"], capture_output=True, text=True, check=True).stdout
            known = set(re.findall(r"--[a-z0-9-]+", helptext))
            for flag in {w.split("=")[0] for w in words if w.startswith("--")}:
                if flag not in known:
                    bad.append(f"{f}: {doc['metadata']['name']}/{c['name']}: `capstan {mode}` has no {flag}")
if bad:
    print("\n".join(bad), file=sys.stderr)
    sys.exit(1)
print(f"k8s manifests: objects valid, every capstan flag known ({', '.join(files)})")
PY
