#!/usr/bin/env bash
# Re-creates the shipped sample models (CPU, a few minutes each on 2 cores).
# Both are trained on the built-in digits with the adaptive schedule aimed at keep 0.5:
# the 4 least important of 8 blocks are annealed towards always-dropped while training.
set -euo pipefail
cd "$(dirname "$0")"
compress train --arch resnet_tiny --epochs 40 --drop-path-rate 0.2 --schedule adaptive --target-keep 0.5 \
  --seed 0 --out resnet_tiny.pdparams "$@"
compress train --arch vit_tiny --epochs 40 --drop-path-rate 0.2 --schedule adaptive --target-keep 0.5 \
  --seed 0 --out vit_tiny.pdparams "$@"
