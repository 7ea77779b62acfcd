#!/bin/bash
# One device call: unpack the packed rsna-raw dataset, train on its train split (split.csv from
# the CPU run), evaluate on its test split, benchmark; small results into $OUT.
set -u -o pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
export PYTHONPATH=$HERE/code PYTHONUNBUFFERED=1
EPOCHS=${EPOCHS:-150}; SIZE=${SIZE:-256}; MAXMIN=${MAXMIN:-3.5}; TRAIN_N=${TRAIN_N:-1024}; PRED_N=${PRED_N:-800}
WORKERS=${WORKERS:-6}; PY=${PY:-python3}; OUT=${OUT:-/tmp/out}; WORK=${WORK:-/tmp/boneage_gpu}
D=$WORK/raw256; RUN=$WORK/run; LOG=$OUT/log.txt
mkdir -p $D/dataset $OUT
$PY -c "import numpy as np, sys; np.save(sys.argv[2], np.load(sys.argv[1])['images'])" $HERE/data/images.npz $D/dataset/images.npy
cp $HERE/data/index.csv $HERE/data/meta.json $D/dataset/ && cp $HERE/data/run.json $D/
(nvidia-smi --query-gpu=name,memory.total --format=csv 2>&1; $PY -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available())") | tee $LOG
cd $HERE/code
$PY -m cli.main train-resnet34 $D --labels $HERE/data/labels.csv --out $RUN --split-file $HERE/data/split.csv \
  --size-px $SIZE --epochs $EPOCHS --workers $WORKERS --max-minutes $MAXMIN --no-progress 2>&1 | tee -a $LOG
$PY benchmarks/bench_boneage.py --data $D --labels $HERE/data/labels.csv --size-px $SIZE --model $RUN/model.pt \
  --train-images $TRAIN_N --predict-images $PRED_N --workers $WORKERS --json $OUT/bench.json 2>&1 | tee -a $LOG
cp $RUN/metrics.json $RUN/history.csv $RUN/predictions.csv $RUN/curves.png $RUN/scatter.png $RUN/model.json $OUT/
