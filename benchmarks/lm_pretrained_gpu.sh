#!/usr/bin/env bash
# benchmarks/lm_pretrained.py at full settings on one GPU (bf16 base weights, larger batches,
# both envs, 200 test goals played 32 at a time, PPO cut to fit a 90-minute budget); writes
# benchmarks/results/lm_pretrained_gpu.{md,json}.
# Run from the repository root after `make setup`: bash benchmarks/lm_pretrained_gpu.sh
set -euo pipefail
PY=${PY:-.venv/bin/python}
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no GPU visible')"
exec "$PY" benchmarks/lm_pretrained.py \
    --envs rlft/Shop-v0 rlft/Research-v0 \
    --demos 300 --epochs 3 --batch-size 16 --lr 2e-4 \
    --window 2 --max-page-chars 1000 --max-prompt-tokens 1024 --dtype bfloat16 \
    --updates 100 --num-envs 16 --num-steps 16 --minibatch-size 64 --update-epochs 2 \
    --episodes 200 --concurrency 32 --budget-minutes 85 --work runs/bench-lm-pretrained-gpu "$@"
