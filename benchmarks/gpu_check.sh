#!/usr/bin/env bash
# One command for a machine with one NVIDIA GPU (under 8 minutes on an H100): speed and
# memory of Stable Diffusion 2 base at 512 px (sd_speed.py: float32 and bfloat16, batch 1
# and 4, DPS and DMAP steps; then the memory options at bfloat16, batch 4) and of the
# full-size ADM-256 network (checkpoint_speed.py), all with random weights. Writes
# benchmarks/results/gpu_check.md: one table per script, headed by the device's name.
#
#     bash benchmarks/gpu_check.sh            # after: pip install torch==2.13.0 -e '.[diffusers]'
set -euo pipefail
cd "$(dirname "$0")"
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check.sh: no CUDA device visible')"
start=$SECONDS
python sd_speed.py --device cuda --dtypes bfloat16,float32 --batches 1,4 --options none --steps 3 --reps 3 --tag _gpu
python sd_speed.py --device cuda --dtypes bfloat16 --batches 4 --options none,checkpointing,slicing,channels-last \
    --option-parts all --steps 3 --reps 3 --tag _gpu_options
python checkpoint_speed.py --config adm-ffhq256 --device cuda --batches 1,4 --dtypes float32,bfloat16 --steps 3 --reps 3
{
    echo "# GPU check: $(python -c 'import torch; print(torch.cuda.get_device_name(0))'), $(date -u +%Y-%m-%d)"
    echo
    echo "## Stable Diffusion 2 base, 512 px"
    echo
    cat results/sd_speed_cuda_gpu.md
    echo
    echo "## Memory and speed options (bfloat16, batch 4)"
    echo
    cat results/sd_speed_cuda_gpu_options.md
    echo
    echo "## ADM-256 (ffhq)"
    echo
    cat results/checkpoint_speed_adm-ffhq256_cuda.md
    echo
    echo "(bash benchmarks/gpu_check.sh, $((SECONDS - start)) s in all)"
} > results/gpu_check.md
cat results/gpu_check.md
