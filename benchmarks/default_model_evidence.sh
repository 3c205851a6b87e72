#!/usr/bin/env bash
# Everything docs/model-card.md reports about the bundled default model, from one training run.
#   bash benchmarks/default_model_evidence.sh RUN_DIR SYNTH_ROOT LALONDE_DIR OUT_DIR
# RUN_DIR: a 'bargainnet train' run (configs/cpu_small.yaml); SYNTH_ROOT: the synthesized
# Lalonde-Efros set ('bargainnet synth', docs/data.md); LALONDE_DIR: ../shared/data/lalonde-efros-2007.
set -euo pipefail
run=$1 synth=$2 lalonde=$3 out=$4
mkdir -p "$out"
weights=src/bargainnet/weights/default.safetensors
bargainnet export-weights "$run" -o "$weights" --fp16
python benchmarks/plot_learning_curve.py "$run" -o docs/images/default_learning_curve.png --table "$out/learning_curve.md"
# Table-1-style comparison on the held-out test split (600 composites of 300 unseen photos), both protocols
for protocol in published standard; do
  bargainnet evaluate --data "$synth" --weights "$weights" --methods composite,reinhard,histogram,covariance \
      --protocol "$protocol" --quiet -o "$out/eval-$protocol"
done
# domain-code analysis (paper Table 2) at the model's working size
bargainnet analyze --data "$synth" --weights "$weights" --splits test,train --limit 600 --size 128 --quiet -o "$out/analyze"
# the 200 real cut-and-paste composites (no ground truth): inharmony before and after
bargainnet score "$lalonde/composite_images" "$lalonde/composite_masks" --after --weights "$weights" --quiet \
    -o "$out/real_composites_inharmony.csv"
# the README's figure: the bundled examples
bargainnet harmonize --input-dir examples --output-dir "$out/examples" --figure docs/images/examples_figure.png
