#!/usr/bin/env bash
# Create a TPU VM pod slice, copy this repo to every host, install it, and run one
# ablation (or one arm of it) on all hosts at once. Checkpoints and the report go
# to a gs:// workdir that every host can reach: the bucket is mounted with
# gcsfuse at ~/gcs on every host, so the code sees an ordinary path.
#
#   scripts/launch_tpu.sh NAME ZONE ACCELERATOR CONFIG WORKDIR
#   scripts/launch_tpu.sh lmdata-size us-central2-b v4-32 \
#       configs/size_ablation.py:tpu gs://my-bucket/lm_data/size
#
# Re-running the same command resumes (finished arms are skipped, the running arm
# continues from its last checkpoint). Preemption sends SIGTERM: the trainer saves
# at the next step boundary and exits cleanly.
set -euo pipefail
NAME=$1; ZONE=$2; ACCEL=$3; CONFIG=$4; WORKDIR=$5
[[ "$WORKDIR" == gs://* ]] || { echo "WORKDIR must be gs://BUCKET/PATH" >&2; exit 2; }
BUCKET=${WORKDIR#gs://}; BUCKET=${BUCKET%%/*}; SUBDIR=${WORKDIR#gs://$BUCKET}
VERSION=${TPU_SOFTWARE_VERSION:-v2-alpha-tpuv5}
REPO=$(cd "$(dirname "$0")/.." && pwd)

if ! gcloud compute tpus tpu-vm describe "$NAME" --zone "$ZONE" >/dev/null 2>&1; then
  gcloud compute tpus tpu-vm create "$NAME" --zone "$ZONE" \
      --accelerator-type "$ACCEL" --version "$VERSION"
fi
tar -C "$REPO" --exclude=.git --exclude=.venv --exclude=runs -czf /tmp/lm_data.tgz .
gcloud compute tpus tpu-vm scp /tmp/lm_data.tgz "$NAME":~/ --zone "$ZONE" --worker=all
gcloud compute tpus tpu-vm ssh "$NAME" --zone "$ZONE" --worker=all --command "
  set -e
  mkdir -p ~/lm_data && tar -C ~/lm_data -xzf ~/lm_data.tgz && cd ~/lm_data
  python3 -m venv .venv && . .venv/bin/activate
  pip install -q -e . 'jax[tpu]'
  mkdir -p ~/gcs && (mountpoint -q ~/gcs || gcsfuse --implicit-dirs $BUCKET ~/gcs)
  # Every host runs the same command; jax.distributed finds its peers on TPU VMs.
  nohup python main.py --config=$CONFIG --workdir=\$HOME/gcs$SUBDIR > ~/run.log 2>&1 &
"
echo "started on every worker of $NAME; logs: gcloud compute tpus tpu-vm ssh $NAME --zone $ZONE --worker=0 --command 'tail -f ~/run.log'"
