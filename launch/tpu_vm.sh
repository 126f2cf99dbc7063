#!/usr/bin/env bash
# A Cloud TPU VM (or pod slice) run, start to finish: create it, copy this checkout to every
# worker, install the project with jax[tpu], run the same train_lib.main command on all
# workers (JAX finds the pod's topology itself), fetch the logs, delete the TPU.
#
#   launch/tpu_vm.sh [--dry-run] --name=NAME --zone=ZONE --type=v5litepod-16 [--version=VERSION]
#                    [--project=PROJECT] [--bucket=gs://BUCKET] [--queued] [--spot] [--keep] -- MAIN_ARGS...
#
#   launch/tpu_vm.sh --name=lamina-1 --zone=us-west4-a --type=v5litepod-16 --bucket=gs://my-runs -- \
#       --config=experiments/fashion_mnist_resnet.py
#
# The workdir is a bucket: every worker writes its checkpoint shards, and process 0 its
# metrics and TensorBoard files, to the same gs:// path, which outlives the VMs. Without
# --workdir in MAIN_ARGS it is gs://BUCKET/lamina/NAME. A local --workdir is refused for
# a slice of several hosts (more than 8 chips or cores), and for one host unless --keep:
# the VMs and their disks are deleted at the end. --queued asks for the TPU through a
# queued resource (waits for capacity); --spot makes it preemptible: a preempted run saves,
# exits 75, and the same command resumes from the bucket. --keep skips the delete.
set -euo pipefail

dry_run=0; queued=0; spot=0; keep=0
name=''; zone=''; type=''; project=''; bucket=''; version='v2-alpha-tpuv5-lite'
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --name=*) name=${1#*=} ;;
    --zone=*) zone=${1#*=} ;;
    --type=*) type=${1#*=} ;;
    --version=*) version=${1#*=} ;;
    --project=*) project=${1#*=} ;;
    --bucket=*) bucket=${1#*=} ;;
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

fail() { echo "tpu_vm.sh: $1" >&2; exit 2; }
workdir=''
for arg in "$@"; do
  [[ $arg == --workdir=* ]] && workdir=${arg#*=}
done
if [[ -z $workdir ]]; then
  [[ -n $bucket ]] || fail "give --bucket=gs://BUCKET (the workdir is then gs://BUCKET/lamina/$name) or --workdir=gs://... after --"
  [[ $bucket == gs://* ]] || fail "--bucket=$bucket is not a gs:// bucket; pass --bucket=gs://BUCKET"
  workdir=${bucket%/}/lamina/$name
  set -- "$@" "--workdir=$workdir"
elif [[ $workdir != gs://* ]]; then
  size=${type##*-}
  if [[ $size =~ ^[0-9]+$ ]] && ((size > 8)); then
    fail "--workdir=$workdir is a local path, but a $type has several hosts, each with its own disk, deleted at the end; pass --workdir=gs://BUCKET/PATH"
  elif ((!keep)); then
    fail "--workdir=$workdir is a local path on a TPU VM that is deleted at the end; pass --workdir=gs://BUCKET/PATH (or --keep)"
  fi
fi

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

if [[ $workdir == gs://* ]]; then
  # Before paying for a TPU: the bucket exists and these credentials can see it.
  describe=(gcloud storage buckets describe "$(echo "$workdir" | cut -d/ -f1-3)" --format='value(name)')
  [[ -n $project ]] && describe+=(--project="$project")
  run "${describe[@]}"
fi
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
[[ $workdir == gs://* ]] && run gcloud storage cp "./$name-train.log" "$workdir/train.log"
if ((!keep)); then
  if ((queued)); then
    run gcloud compute tpus queued-resources delete "$name" --force --quiet "${common[@]}"
  else
    run gcloud compute tpus tpu-vm delete "$name" --quiet "${common[@]}"
  fi
fi
echo "tpu_vm.sh: checkpoints, metrics and TensorBoard files are in $workdir" >&2
exit $status
