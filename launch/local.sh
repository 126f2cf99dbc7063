#!/usr/bin/env bash
# One machine, one process: the CPU, or every local GPU (JAX drives them all from one process).
#
#   launch/local.sh [--dry-run] [--gpus=0,1,...] -- MAIN_ARGS...
#   launch/local.sh --gpus=0,1 -- --config=experiments/fashion_mnist_resnet.py --workdir=/tmp/lamina/fm
#
# --gpus restricts the run to those GPUs (CUDA_VISIBLE_DEVICES); without it JAX takes all
# it finds, or the CPU when there are none. Exit status 75 means preempted: rerun to resume.
set -euo pipefail

dry_run=0
gpus=''
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --gpus=*) gpus=${1#*=} ;;
    --) shift; break ;;
    *) echo "local.sh: unknown option '$1'; see the usage at the top of $0" >&2; exit 2 ;;
  esac
  shift
done

cmd=(env)
[[ -n $gpus ]] && cmd+=("CUDA_VISIBLE_DEVICES=$gpus")
cmd+=("${PYTHON:-python}" -m train_lib.main "$@")
if ((dry_run)); then
  printf '%q ' "${cmd[@]}"
  printf '\n'
  exit 0
fi
exec "${cmd[@]}"
