#!/usr/bin/env bash
# The kloop loop on a local sandbox cluster, step by step with timings:
# sandbox up → pool → claim → samples → `kloop dap` on workload orders →
# breakpoint on cluster traffic → edit & save → relaunch → breakpoint in the
# new code → leave → release → sandbox down, then a table of the steps.
# Everything it creates is torn down, also on failure and on Ctrl-C.
#
#   scripts/demo.sh [KLOOP_BINARY]   (make demo passes bin/kloop)
set -euo pipefail
cd "$(dirname "$0")/.."
args=()
if [[ -n ${1:-} ]]; then
	args+=(-kloop "$1")
fi
exec go run ./test/demo/cmd/demo "${args[@]}"
