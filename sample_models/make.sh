#!/usr/bin/env bash
# Re-creates the shipped sample models (CPU; about 6 and 15 minutes on 2 busy cores).
# Both are trained on the built-in digits with the adaptive schedule aimed at keep 0.5:
# the 4 least important of 8 blocks are annealed towards being always dropped
# (to --max-rate) while the others stay at the floor rate.
set -euo pipefail
cd "$(dirname "$0")"
compress train --arch resnet_tiny --epochs 40 --drop-path-rate 0.2 --schedule adaptive --target-keep 0.5 \
  --max-rate 0.7 --seed 0 --out resnet_tiny.pdparams "$@"
compress train --arch vit_tiny --epochs 40 --drop-path-rate 0.2 --schedule adaptive --target-keep 0.5 \
  --max-rate 0.9 --seed 0 --out vit_tiny.pdparams "$@"
