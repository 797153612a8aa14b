#!/usr/bin/env bash
# The GitHub Action's logic (action.yml runs this): run a canary, publish its Markdown summary,
# set the step outputs, and exit with the canary's exit code.
#
# Inputs come as environment variables (action.yml maps `with:` to them):
#   ORCH_SPEC      the CanaryRollout spec file (required)
#   ORCH_IMAGE     the new image (optional: the spec's change.image otherwise)
#   ORCH_TIMEOUT   seconds to wait before giving up (exit 4; the rollout goes on); optional
#   ORCH_ARGS      extra arguments for `orchestrator canary run`, split on spaces; optional
#   ORCHESTRATOR   the command to run (default: orchestrator on PATH)
#   ORCH_DOTENV    also write the outputs to this file as CANARY_OUTCOME=..., CANARY_VERDICT=...,
#                  CANARY_WORKFLOW_URL=..., CANARY_EXIT_CODE=... (a GitLab dotenv report)
# GitHub provides GITHUB_STEP_SUMMARY and GITHUB_OUTPUT (files); without them the summary and the
# outputs go to stdout, so the script also works in any other CI.
#
# Outputs: outcome (promoted, rolled-back, aborted, failed, ... or invalid, unreachable, pending,
# error when there is no result), verdict (the decisive gate's), workflow-url, exit-code.
set -uo pipefail

spec="${ORCH_SPEC:?ORCH_SPEC: the spec file to run is required}"
cmd="${ORCHESTRATOR:-orchestrator}"
args=(canary run "$spec" --wait -o markdown)
[[ -n "${ORCH_IMAGE:-}" ]] && args+=(--image "$ORCH_IMAGE")
[[ -n "${ORCH_TIMEOUT:-}" ]] && args+=(--timeout "$ORCH_TIMEOUT")
if [[ -n "${ORCH_ARGS:-}" ]]; then
  read -r -a extra <<<"$ORCH_ARGS"
  args+=("${extra[@]}")
fi

out="$(mktemp)"
err="$(mktemp)"
trap 'rm -f "$out" "$err"' EXIT

"$cmd" "${args[@]}" >"$out" 2>"$err"
code=$?
cat "$out"
cat "$err" >&2

# The Markdown ends with <!-- orchestrator-result {json} --> carrying outcome, verdict and workflowUrl.
facts="$(grep -o '<!-- orchestrator-result {.*} -->' "$out" | tail -n 1 | sed -e 's/^<!-- orchestrator-result //' -e 's/ -->$//')"
field() {
  python3 -c 'import json, sys; v = json.loads(sys.argv[1]).get(sys.argv[2]); print("" if v is None else v)' \
    "$facts" "$1"
}
if [[ -n "$facts" ]]; then
  outcome="$(field outcome)"
  verdict="$(field verdict)"
  url="$(field workflowUrl)"
else
  case "$code" in
    2) outcome=invalid ;;
    3) outcome=unreachable ;;
    4) outcome=pending ;;
    *) outcome=error ;;
  esac
  verdict=none
  url=""
fi

summary="${GITHUB_STEP_SUMMARY:-/dev/stdout}"
{
  if [[ -n "$facts" ]]; then
    cat "$out"
  else
    echo "### Canary \`$spec\`: $outcome (exit $code)"
    echo
    echo '```'
    # The last lines of the command's output explain why there is no result.
    tail -n 20 "$err"
    tail -n 20 "$out"
    echo '```'
  fi
} >>"$summary"

# Values are single lines; a newline in one would forge another output, so keep the first line only.
{
  echo "outcome=${outcome%%$'\n'*}"
  echo "verdict=${verdict%%$'\n'*}"
  echo "workflow-url=${url%%$'\n'*}"
  echo "exit-code=$code"
} >>"${GITHUB_OUTPUT:-/dev/stdout}"

if [[ -n "${ORCH_DOTENV:-}" ]]; then
  {
    echo "CANARY_OUTCOME=${outcome%%$'\n'*}"
    echo "CANARY_VERDICT=${verdict%%$'\n'*}"
    echo "CANARY_WORKFLOW_URL=${url%%$'\n'*}"
    echo "CANARY_EXIT_CODE=$code"
  } >>"$ORCH_DOTENV"
fi

exit "$code"
