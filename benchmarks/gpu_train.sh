#!/usr/bin/env bash
# One prepared training run for a lent GPU machine (issue 11: "where a GPU is available, also
# train there with one prepared script of at most 10 minutes"). It installs nothing and reads only
# the working tree and the photo pack of benchmarks/gpu_pack.py (the machine cannot see
# ../shared): composites are drawn on the fly by CPU workers (CompositeStream, synth_v2's
# distribution), the network trains on the GPU in bf16, and the few files worth keeping are
# copied to $OUT (checkpoints stay behind: over the 16 MiB a file may bring back).
#
#   here, once:   python benchmarks/gpu_pack.py --lalonde ../shared/data/lalonde-efros-2007 \
#                     --photos data_local/train_photos --out data_local/gpu_pack
#   device:       run(command="bash benchmarks/gpu_train.sh 8", carry=["data_local/gpu_pack"], timeout_s=600)
#   CPU dry run:  ACCELERATOR=cpu PRECISION=32-true OUT=runs/gpu_dry bash benchmarks/gpu_train.sh 1 \
#                     trainer.max_steps=3 data.batch_size=2 WORKERS=1
#
# Arguments: MINUTES of training (default 8; the run also stops at MAX_STEPS), then any
# `key.sub=value` overrides, which come last and win. The default recipe fine-tunes the bundled
# default on the real photos alone (no teacher: its 29 MB would not fit beside the pack), with
# the last stage's squared errors and identity weight; INIT=none trains from scratch, INIT=FILE
# from another weights file; BATCH, MAX_STEPS, PACK, RUN (the run folder, /tmp) and PYTHON too. Files back in $OUT: candidate.safetensors (fp16, the bundled
# default's lifting radius and measured strength), metrics.csv, config.yaml, train.log, env.json.
set -euo pipefail

MINUTES=${1:-8}
shift || true
PACK=${PACK:-data_local/gpu_pack}
OUT=${OUT:?set OUT to the folder whose files come back}
ACCELERATOR=${ACCELERATOR:-gpu}
PRECISION=${PRECISION:-bf16-mixed}
PY=${PYTHON:-python3}
RUN=${RUN:-/tmp/bargainnet_gpu_run}
INIT=${INIT:-src/bargainnet/weights/default.safetensors}
BATCH=${BATCH:-64}
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$OUT"

# What remains of the command line: overrides, possibly WORKERS=N.
OVERRIDES=()
for a in "$@"; do
    case $a in
        WORKERS=*) WORKERS=${a#WORKERS=} ;;
        *) OVERRIDES+=("$a") ;;
    esac
done
WORKERS=${WORKERS:-$(( $(nproc) > 1 ? $(nproc) - 1 : 1 ))}

# Preflight (seconds): the modules, the accelerator and the pack, before any device time is spent.
"$PY" - "$PACK" "$ACCELERATOR" "$OUT/env.json" <<'EOF'
import importlib.util, json, pathlib, platform, sys
pack, accelerator, env_out = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
need = ["torch", "lightning", "safetensors", "skimage", "scipy", "yaml", "tqdm", "PIL", "tensorboard"]
missing = [m for m in need if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu_train: missing Python packages: {', '.join(missing)}")
import torch
from PIL import features
if accelerator == "gpu" and not torch.cuda.is_available():
    sys.exit("gpu_train: no CUDA device visible to torch")
if not features.check("webp"):
    sys.exit("gpu_train: this Pillow cannot read WebP (the pack's photos)")
info = json.loads((pack / "PACK.json").read_text()) if (pack / "PACK.json").is_file() else None
if info is None:
    sys.exit(f"gpu_train: no photo pack at {pack} (benchmarks/gpu_pack.py; carry it)")
env = {"python": platform.python_version(), "torch": torch.__version__, "cpus": __import__("os").cpu_count(),
       "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu", "pack": info["counts"]}
pathlib.Path(env_out).write_text(json.dumps(env, indent=2) + "\n")
print("gpu_train:", json.dumps(env), file=sys.stderr)
EOF

# Steps: what the workers can feed in MINUTES at 30 composites/s each (the 2-core sandbox's
# stream made 41/s per core from the pack at 128 px, 37/s from the original files), so that the
# cosine schedule ends with the time; max_hours stops the run a minute later whatever happens.
MAX_STEPS=${MAX_STEPS:-$(( MINUTES * 60 * WORKERS * 30 / BATCH ))}
HOURS=$("$PY" -c "print(($MINUTES + 1) / 60)")
INIT_ARGS=()
[ "$INIT" != none ] && INIT_ARGS=(--init-weights "$INIT")
rm -rf "$RUN"
P=$PACK/photos
set +e
"$PY" -m bargainnet.cli train --config configs/cpu_fast.yaml --out "$RUN" --no-progress \
    --stream-images "$PACK/images" --stream-masks "$PACK/masks" "${INIT_ARGS[@]}" \
    --accelerator "$ACCELERATOR" --devices 1 --precision "$PRECISION" \
    "data.stream_options.photo_dirs=[$P/opencv-doc,$P/mate-backgrounds,$P/lomiri-wallpapers-16.04]" \
    data.stream_options.photo_dirs_share=0.15 "data.stream_options.cutouts=$PACK/cutouts" \
    data.num_workers="$WORKERS" data.batch_size="$BATCH" \
    trainer.max_steps="$MAX_STEPS" trainer.max_hours="$HOURS" trainer.val_every_n_steps=0 \
    loss.distill=0 loss.distill_codes=0 loss.norm=l2 loss.identity_weight=2 loss.triplet_weight=0.0017 \
    optim.lr=4e-4 optim.warmup_steps=100 \
    "${OVERRIDES[@]}" > "$OUT/train.log" 2>&1
status=$?
echo "gpu_train: training took $SECONDS s (preflight included), $WORKERS workers, batch $BATCH, max_steps $MAX_STEPS" >> "$OUT/train.log"
set -e
tail -5 "$OUT/train.log" >&2
cp "$RUN/config.yaml" "$OUT/" 2>/dev/null || true
find "$RUN" -name metrics.csv -exec cp {} "$OUT/metrics.csv" \; 2>/dev/null || true
[ $status -eq 0 ] || { echo "gpu_train: training failed (exit $status), see train.log" >&2; exit $status; }
"$PY" -m bargainnet.cli export-weights "$RUN" -o "$OUT/candidate.safetensors" --fp16 --lift-radius 64 \
    --strength auto --calibration size=64,placements=1,scale=0.9,min_strength=0.4,max_strength=0.9,fallback=0.7
echo "gpu_train: $OUT/candidate.safetensors written" >&2
