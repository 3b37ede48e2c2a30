#!/usr/bin/env bash
# Issue 12 item 4, the round trip: a btnet-trained IResNet (phi_hr, real faces) exported the
# arcface_torch way, imported back, branches added from the import vs from the original folder.
# Usage: benchmarks/labelfree_onnx_roundtrip.sh TRUNK_MODEL_FOLDER IMAGES OUT [SHARED_DATA]
set -euo pipefail
TRUNK=$1
IMAGES=$2
OUT=$3
DATA=${4:-../shared/data}
mkdir -p "$OUT"
python - <<PY
from btnet.io.trunks import open_trunk
from btnet.deployment.onnx_arcface import export_arcface_onnx
t = open_trunk("$TRUNK")
export_arcface_onnx(t.backbone, "$OUT/trunk.onnx")
print("exported", t.describe())
PY
for src in folder onnx; do
  T=$TRUNK; [ $src = onnx ] && T=$OUT/trunk.onnx
  /usr/bin/time -f "%e s" btnet branch add $T $IMAGES --out $OUT/from_$src --epochs 2 --batch-size 64 --seed 0 -q
done
btnet eval verify --model original=$OUT/from_folder --model onnx_import=$OUT/from_onnx \
  --set $DATA/lfw/pairs.txt --settings 'S&7,S&14,S&28,7&7,S&S' --out $OUT/report
