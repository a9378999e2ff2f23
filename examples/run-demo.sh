#!/usr/bin/env bash
# `make demo`: the Login Portal on :5000 and two demo apps, Modeler on :5001 and
# Forum on :5003 (both registered in clients.yaml), in the foreground.
# Ctrl-C stops all three; so does any one of them stopping.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}

trap 'exit 130' INT TERM  # Ctrl-C: leave through the EXIT trap, which stops the three
trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT

"$BIN/flask" --app oidc_provider run --host 127.0.0.1 --port 5000 &
DEMO_CLIENT_ID=modeler DEMO_NAME=Modeler DEMO_PORT=5001 DEMO_CLIENT_SECRET=dev-secret-modeler \
  "$BIN/python" -m examples.demo_rp &
DEMO_CLIENT_ID=forum DEMO_NAME=Forum DEMO_PORT=5003 DEMO_CLIENT_SECRET=dev-secret-forum \
  "$BIN/python" -m examples.demo_rp &

cat <<TEXT
Login Portal  http://127.0.0.1:5000/
Modeler       http://127.0.0.1:5001/
Forum         http://127.0.0.1:5003/
Ctrl-C stops all three.
TEXT
wait -n
