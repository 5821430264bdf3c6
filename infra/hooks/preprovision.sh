#!/bin/sh
# azd preprovision hook: the app's UPGRADE_POLICY from the file UPGRADE_POLICY_FILE names
# (azd env set UPGRADE_POLICY_FILE policy.json), checked with the app's own validation
# (python -m upgrade policy check) against TARGET_CLUSTER_IDS before anything is deployed, then
# stored as UPGRADE_POLICY in the azd environment for main.parameters.json. Without a file the
# policy is {} (the defaults). Python is $PYTHON, else .venv/bin/python, else python3.
# Then, once the policy is known to be good, the operator API app registration and its app roles
# (operator-app.sh; stores OPERATOR_APP_CLIENT_ID).
set -eu

policy_file=${UPGRADE_POLICY_FILE:-}
if [ -z "$policy_file" ]; then
  echo "UPGRADE_POLICY_FILE is not set: the app runs with the default policy ({})"
  azd env set UPGRADE_POLICY '{}'
  sh "$(dirname "$0")/operator-app.sh"
  exit 0
fi
if [ ! -f "$policy_file" ]; then
  echo "error: UPGRADE_POLICY_FILE=$policy_file: no such file" >&2
  exit 1
fi
python=${PYTHON:-}
if [ -z "$python" ]; then
  if [ -x .venv/bin/python ]; then python=.venv/bin/python; else python=python3; fi
fi
# The same errors the app would give at start-up, naming the JSON path at fault.
"$python" -m upgrade policy check "$policy_file" --allowed-clusters "${TARGET_CLUSTER_IDS:-}"
policy=$("$python" -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1], encoding="utf-8-sig")), separators=(",", ":")))' "$policy_file")
azd env set UPGRADE_POLICY "$policy"
sh "$(dirname "$0")/operator-app.sh"
