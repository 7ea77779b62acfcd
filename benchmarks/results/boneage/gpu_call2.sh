#!/bin/bash
# Second device call: two longer cosine runs (sex as a scalar vs a learned embedding) on the
# same split; small results into $OUT/a and $OUT/b.
set -u -o pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
export PYTHONPATH=$HERE/code PYTHONUNBUFFERED=1
EPOCHS=${EPOCHS:-220}; SIZE=${SIZE:-256}; MAXMIN=${MAXMIN:-2.3}; WORKERS=${WORKERS:-6}; PY=${PY:-python3}
OUT=${OUT:-/tmp/out}; WORK=${WORK:-/tmp/boneage_gpu}; D=$WORK/raw256; LOG=$OUT/log.txt
mkdir -p $D/dataset $OUT/a $OUT/b
$PY -c "import numpy as np, sys; np.save(sys.argv[2], np.load(sys.argv[1])['images'])" $HERE/data/images.npz $D/dataset/images.npy
cp $HERE/data/index.csv $HERE/data/meta.json $D/dataset/ && cp $HERE/data/run.json $D/
cd $HERE/code
for v in a:scalar b:embedding; do
  name=${v%%:*}; sex=${v##*:}
  echo "== run $name: sex $sex, cosine, $EPOCHS epochs" | tee -a $LOG
  $PY -m cli.main train-resnet34 $D --labels $HERE/data/labels.csv --out $WORK/$name --split-file $HERE/data/split.csv \
    --size-px $SIZE --epochs $EPOCHS --scheduler cosine --warmup-epochs 5 --patience 1000 --sex-mode $sex \
    --workers $WORKERS --max-minutes $MAXMIN --no-progress 2>&1 | tee -a $LOG
  cp $WORK/$name/metrics.json $WORK/$name/history.csv $OUT/$name/
done
cp $WORK/a/predictions.csv $WORK/a/curves.png $WORK/a/scatter.png $OUT/a/
