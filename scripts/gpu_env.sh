# Sourced by the scripts/gpu_*.sh device runs: the environment every one of them needs.
# - NVLink multicast stays off in NCCL, PyTorch and NVSHMEM (on a shared host it can take GPUs out of service);
# - nothing can be downloaded on the GPU machine (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE);
# - OUT: the folder the run writes into. On the device machine pass the folder whose files come back
#   (OUT=$OUT); elsewhere it defaults to a new folder results/gpu/<UTC time>/ of this checkout. Copy what you keep
#   into results/gpu/ under a name with the card, and add a line per file to results/README.md;
# - the device copy has no .git: pass ASD_GIT_REVISION=$(git rev-parse --short HEAD) for the provenance.
set -uo pipefail
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:-results/gpu/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
echo "writing into $OUT (revision ${ASD_GIT_REVISION:-unknown})"
