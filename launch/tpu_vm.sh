#!/usr/bin/env bash
# A Cloud TPU VM (or pod slice) run, start to finish: create it, copy this checkout to every
# worker, install the project with jax[tpu], run the same train_lib.main command on all
# workers (JAX finds the pod's topology itself), fetch the logs, delete the TPU.
#
#   launch/tpu_vm.sh [--dry-run] --name=NAME --zone=ZONE --type=v5litepod-16 [--version=VERSION]
#                    [--project=PROJECT] [--queued] [--spot] [--keep] -- MAIN_ARGS...
#
#   launch/tpu_vm.sh --name=lamina-1 --zone=us-west4-a --type=v5litepod-8 -- \
#       --config=experiments/fashion_mnist_resnet.py --workdir=/mnt/runs/fm
#
# --queued asks for the TPU through a queued resource (waits for capacity); --spot makes it
# preemptible: a preempted run saves, exits 75, and the same command resumes from the
# workdir. The workdir is a local path on every worker: for a run that must outlive the
# VM, mount a bucket there (gcsfuse) in the image. --keep skips the delete.
set -euo pipefail

dry_run=0; queued=0; spot=0; keep=0
name=''; zone=''; type=''; project=''; version='v2-alpha-tpuv5-lite'
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --name=*) name=${1#*=} ;;
    --zone=*) zone=${1#*=} ;;
    --type=*) type=${1#*=} ;;
    --version=*) version=${1#*=} ;;
    --project=*) project=${1#*=} ;;
    --queued) queued=1 ;;
    --spot) spot=1 ;;
    --keep) keep=1 ;;
    --) shift; break ;;
    *) echo "tpu_vm.sh: unknown option '$1'; see the usage at the top of $0" >&2; exit 2 ;;
  esac
  shift
done
for required in name zone type; do
  if [[ -z ${!required} ]]; then
    echo "tpu_vm.sh: --$required is required; see the usage at the top of $0" >&2
    exit 2
  fi
done

common=(--zone="$zone")
[[ -n $project ]] && common+=(--project="$project")
repo=$(cd "$(dirname "$0")/.." && pwd)
archive=/tmp/$name-lamina.tar.gz
main_args=$(printf '%q ' "$@")

run() {
  if ((dry_run)); then
    printf '%q ' "$@"
    printf '\n'
  else
    "$@"
  fi
}

if ((queued)); then
  create=(gcloud compute tpus queued-resources create "$name" --node-id="$name" --accelerator-type="$type"
          --runtime-version="$version" "${common[@]}")
  ((spot)) && create+=(--spot)
  run "${create[@]}"
  state=(gcloud compute tpus queued-resources describe "$name" "${common[@]}" --format='value(state.state)')
  if ((dry_run)); then
    run "${state[@]}"
  else
    until [[ $("${state[@]}") == ACTIVE ]]; do sleep 30; done  # capacity can take hours
  fi
else
  create=(gcloud compute tpus tpu-vm create "$name" --accelerator-type="$type" --version="$version" "${common[@]}")
  ((spot)) && create+=(--spot)
  run "${create[@]}"
fi

ssh=(gcloud compute tpus tpu-vm ssh "$name" --worker=all "${common[@]}")
# The committed tree, not the working one: what runs is what git can name.
run git -C "$repo" archive --format=tar.gz --output="$archive" HEAD
run gcloud compute tpus tpu-vm scp --worker=all "${common[@]}" "$archive" "$name:lamina.tar.gz"
run "${ssh[@]}" --command="mkdir -p lamina && tar xzf lamina.tar.gz -C lamina && cd lamina && python3 -m pip install -q -e '.[tpu]'"
status=0
run "${ssh[@]}" --command="cd lamina && python3 -m train_lib.main $main_args 2>&1 | tee train.log" || status=$?
run gcloud compute tpus tpu-vm scp --worker=0 "${common[@]}" "$name:lamina/train.log" "./$name-train.log"
if ((!keep)); then
  if ((queued)); then
    run gcloud compute tpus queued-resources delete "$name" --force --quiet "${common[@]}"
  else
    run gcloud compute tpus tpu-vm delete "$name" --quiet "${common[@]}"
  fi
fi
exit $status
