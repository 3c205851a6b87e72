#!/usr/bin/env bash
# Rebuilds every local data set the default model's training and its measurements use (docs/data.md,
# docs/evaluation.md), deterministically (fixed seeds), into data_local/ (ignored by git):
#   bash benchmarks/build_data.sh [LALONDE_DIR]     # default ../shared/data/lalonde-efros-2007
#   data_local/train_photos   registry photos and the even-hash Tux Paint stamps (training side)
#   data_local/synth_v2       the broad training set (18,960 train + 376 test composites)
#   data_local/heldout        the held-out registry photos and the odd-hash stamps (evaluation only)
#   data_local/known_answer   the 910-item held-out benchmark
#   data_local/ka_validation2 the 538-item validation set (training-side material only)
#   data_local/known_answer_x, data_local/ka_validation2x  the same + 320 extra real cut-outs (400 in
#                             all; every other item byte-identical), the sets measured on since session 10
# Needs apt-get and dpkg (the packages are downloaded, never installed) and the bench extra
# (pip install -e ".[bench]"). A set whose folder already exists is kept, not rebuilt.
# 2-core sandbox, 2026-12-01: 11 minutes in all from scratch, both cores shared with two training runs
# (synth_v2 about 5 of them); the items came out identical to the ones measured on.
set -euo pipefail
lalonde=${1:-../shared/data/lalonde-efros-2007}
[ -d "$lalonde/real_images" ] || { echo "error: $lalonde/real_images not found (the Lalonde-Efros data)" >&2; exit 2; }
py=${PYTHON:-python}
d=data_local
mkdir -p "$d"
[ -d "$d/train_photos" ] || "$py" -m bargainnet.data.photos fetch --out "$d/train_photos"
if [ ! -d "$d/synth_v2" ]; then
  p=$d/train_photos
  "$py" -m bargainnet.cli synth --out "$d/synth_v2" \
      --images "$lalonde/real_images" --masks "$lalonde/real_masks" --reserve-test --val-fraction 0.05 \
      --photos "$p/opencv-doc" --photos "$p/mate-backgrounds" --photos "$p/lomiri-wallpapers-16.04" \
      --cutouts "$p/tuxpaint-stamps-default" --cutout-half even \
      --masks-per-image 5 --photo-masks-per-image 30 --test-masks-per-image 2 --per-mask 2 \
      --short-side 256 --preview 24 --seed 0
fi
[ -d "$d/heldout" ] || "$py" benchmarks/known_answer.py fetch --out "$d/heldout"
[ -d "$d/known_answer" ] || "$py" benchmarks/known_answer.py build --heldout "$d/heldout" --lalonde "$lalonde" \
    --out "$d/known_answer"
[ -d "$d/ka_validation2" ] || "$py" benchmarks/known_answer.py build --heldout "$d/heldout" --lalonde "$lalonde" \
    --validation-of "$d/synth_v2" --out "$d/ka_validation2"
[ -d "$d/known_answer_x" ] || "$py" benchmarks/known_answer.py build --heldout "$d/heldout" --lalonde "$lalonde" \
    --out "$d/known_answer_x" --extra-cutouts 320
[ -d "$d/ka_validation2x" ] || "$py" benchmarks/known_answer.py build --heldout "$d/heldout" --lalonde "$lalonde" \
    --validation-of "$d/synth_v2" --out "$d/ka_validation2x" --extra-cutouts 320
echo "data sets ready in $d/"
