#!/usr/bin/env bash
# The walkthrough: set up, start the local stack, run every example plan, show the results and
# one execution's event history, then stop the stack. Needs only Python 3.11+ and pip.
#
#   bash scripts/demo.sh              # data in a temporary directory, removed at the end
#   TEP_DEMO_DATA=.tep bash scripts/demo.sh   # keep the data (a later `tep up` continues it)
set -euo pipefail
cd "$(dirname "$0")/.."

setup_log=$(mktemp "${TMPDIR:-/tmp}/tep-demo-setup.XXXXXX")
echo "setting up .venv (scripts/bootstrap.sh)..."
if ! bash scripts/bootstrap.sh >"$setup_log" 2>&1; then
  cat "$setup_log" >&2
  rm -f "$setup_log"
  echo "setup failed" >&2
  exit 1
fi
rm -f "$setup_log"

TEP=(.venv/bin/python -m tep.cli.main)
DEADLINE_S=${TEP_DEMO_TIMEOUT:-90}
DEMO_PORT=8787
data_dir=${TEP_DEMO_DATA:-$(mktemp -d "${TMPDIR:-/tmp}/tep-demo.XXXXXX")}
log_file=$(mktemp "${TMPDIR:-/tmp}/tep-demo-up.XXXXXX")
nats_port=$(.venv/bin/python -c 'from tep.server import find_free_port; print(find_free_port())')
export TEP_NATS_URL="nats://127.0.0.1:${nats_port}"
up_pid=""

cleanup() {
  local status=$?
  if [ -n "$up_pid" ] && kill -0 "$up_pid" 2>/dev/null; then
    kill -TERM "$up_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$up_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$up_pid" 2>/dev/null || true
    wait "$up_pid" 2>/dev/null || true
  fi
  if [ -z "${TEP_DEMO_DATA:-}" ]; then rm -rf "$data_dir"; fi
  if [ "$status" -ne 0 ]; then
    echo "demo failed (exit $status); the stack's log follows:" >&2
    tail -n 40 "$log_file" >&2 || true
  fi
  rm -f "$log_file"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if .venv/bin/python - "$DEMO_PORT" <<'PY'
import socket, sys
with socket.socket() as s:
    sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)
PY
then
  echo "port ${DEMO_PORT} is in use; the examples call the demo target there: free it first" >&2
  exit 2
fi

if [ -t 1 ]; then
  step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
  step() { printf '\n== %s\n' "$*"; }
fi

step "starting the stack: tep up --with-demo-target (data in ${data_dir})"
"${TEP[@]}" up --with-demo-target --executors 2 --data-dir "$data_dir" >"$log_file" 2>&1 &
up_pid=$!
for _ in $(seq $((DEADLINE_S * 10))); do
  if grep -q '^ready:' "$log_file"; then break; fi
  if ! kill -0 "$up_pid" 2>/dev/null; then echo "tep up exited early" >&2; exit 1; fi
  sleep 0.1
done
grep -q '^ready:' "$log_file" || { echo "tep up was not ready within ${DEADLINE_S}s" >&2; exit 1; }
grep -v '^{' "$log_file" | sed -n '1,/^ready:/p'

# The three patterns in teaching order, then any other example.
plans=(examples/sequential-pipeline.json examples/fan-out-fan-in.json examples/conditional-fallback.json)
for plan in examples/*.json; do
  case " ${plans[*]} " in *" $plan "*) ;; *) plans+=("$plan") ;; esac
done
declare -a ids=()
history_id=""
status=0
approve() {  # a waitpoint waits for a person: play the approver once it waits
  local id=$1
  for _ in $(seq $((DEADLINE_S * 5))); do
    if "${TEP[@]}" resume "$id" approve --data '{"approved": true, "amount": 120}' \
      >/dev/null 2>&1; then
      echo "resumed: tep resume ${id} approve --data '{\"approved\": true, \"amount\": 120}'"
      return 0
    fi
    sleep 0.2
  done
  return 1
}
for plan in "${plans[@]}"; do
  set +e
  if [ "$plan" = examples/approval.json ]; then
    step "tep submit ${plan}, then tep resume (a waitpoint waits for a person)"
    id=$("${TEP[@]}" submit "$plan")
    approve "$id"
    "${TEP[@]}" watch "$id" --plain --timeout "$DEADLINE_S" >/dev/null
    code=$?
    output=$id
  elif [ "$plan" = examples/retry-from-a-step.json ]; then
    step "tep submit ${plan} --wait (charge fails once), then tep retry --from charge"
    id=$("${TEP[@]}" submit "$plan" --wait --timeout "$DEADLINE_S" | head -n 1)
    "${TEP[@]}" retry "$id" --from charge --reason "the demo target recovered" --wait \
      --timeout "$DEADLINE_S" >/dev/null
    code=$?
    echo "retried: tep retry ${id} --from charge"
    output=$id
  else
    step "tep submit ${plan} --wait"
    output=$("${TEP[@]}" submit "$plan" --wait --timeout "$DEADLINE_S")
    code=$?
  fi
  set -e
  echo "$output"
  id=$(head -n 1 <<<"$output")
  ids+=("$id")
  if [ "$plan" = examples/conditional-fallback.json ]; then history_id=$id; fi
  if [ "$code" -ne 0 ]; then
    echo "-> exit code ${code}" >&2
    status=1
  fi
done

step "results: tep status (from the projected view)"
view_caught_up() {  # the projector applies events a moment after they are appended
  "${TEP[@]}" status "$1" --json 2>/dev/null | .venv/bin/python -c \
    'import json, sys; sys.exit(json.load(sys.stdin)["status"] not in ("completed", "failed", "cancelled"))'
}
for id in "${ids[@]}"; do
  for _ in $(seq 50); do view_caught_up "$id" && break; sleep 0.1; done
  "${TEP[@]}" status "$id" || status=1
  echo
done

history_id=${history_id:-${ids[0]}}
step "event history (retries, a skipped branch, a fallback): tep events ${history_id}"
"${TEP[@]}" events "$history_id"

step "stopping the stack"
kill -TERM "$up_pid"
wait "$up_pid" || true
up_pid=""
echo "stopped"
exit "$status"
