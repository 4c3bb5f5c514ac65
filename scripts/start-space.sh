#!/usr/bin/env bash
# Start Workbench as a public demo (a Hugging Face Space, a Docker container, a shared server):
# demo limits on (limits.py), the embedded model prepared once, the app on 0.0.0.0:$PORT.
#
#   scripts/start-space.sh            PORT (default 7860, a Space's port), WORKBENCH_HOME,
#                                     WORKBENCH_DEMO (default 1; readonly to allow no jobs)
# Expects the environment from scripts/setup.sh (.venv) unless VENV points elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
export PORT=${PORT:-7860}
export WORKBENCH_HOME=${WORKBENCH_HOME:-$PWD/workspace}
export WORKBENCH_DEMO=${WORKBENCH_DEMO:-1}
"$VENV/bin/workbench" models prepare default
exec "$VENV/bin/streamlit" run app.py --server.address 0.0.0.0 --server.port "$PORT" \
  --server.maxUploadSize "${WORKBENCH_MAX_UPLOAD_MB:-20}"
