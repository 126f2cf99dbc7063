#!/usr/bin/env bash
# N processes of `python -m train_lib.main` on this machine, joined over 127.0.0.1.
#
#   launch/multiprocess.sh [--dry-run] [--processes=N] [--devices_per_process=D] [--port=P] -- MAIN_ARGS...
#
#   launch/multiprocess.sh --processes=2 --devices_per_process=2 -- --workdir=/tmp/lamina/mp
#
# D > 0 gives each process D forced CPU devices (what the tests use); D = 0 leaves the
# devices to the platform (one GPU per process, say, with CUDA_VISIBLE_DEVICES set by you).
# SIGTERM/SIGINT to this script reach every process. The exit status is the first
# non-zero status of any process: 75 means preempted, and the same command resumes.
set -euo pipefail

processes=2
devices=2
port=12355
dry_run=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --processes=*) processes=${1#*=} ;;
    --devices_per_process=*) devices=${1#*=} ;;
    --port=*) port=${1#*=} ;;
    --) shift; break ;;
    *) echo "multiprocess.sh: unknown option '$1'; see the usage at the top of $0" >&2; exit 2 ;;
  esac
  shift
done

python=${PYTHON:-python}
pids=()
trap 'kill -TERM "${pids[@]}" 2>/dev/null || true' TERM INT
for ((i = 0; i < processes; i++)); do
  cmd=(env)
  if ((devices > 0)); then
    cmd+=(JAX_PLATFORMS=cpu "XLA_FLAGS=--xla_force_host_platform_device_count=$devices")
  fi
  cmd+=("$python" -m train_lib.main "--coordinator_address=127.0.0.1:$port" "--num_processes=$processes"
        "--process_id=$i" "$@")
  if ((dry_run)); then
    printf '%q ' "${cmd[@]}"
    printf '&\n'
    continue
  fi
  "${cmd[@]}" &
  pids+=($!)
done

status=0
for pid in "${pids[@]}"; do
  # `wait` returns early when a trapped signal arrives: wait again until the process is gone.
  while true; do
    code=0
    wait "$pid" || code=$?
    kill -0 "$pid" 2>/dev/null || break
  done
  if ((code != 0 && status == 0)); then status=$code; fi
done
exit $status
