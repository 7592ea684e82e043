# Sourced by the scripts/gpu_*.sh device runs: the environment every one of them needs. NVLink multicast
# stays off in NCCL, PyTorch and NVSHMEM (the device tool's KINDS.md: it can take a shared host's GPUs out
# of service); nothing can be downloaded there; OUT must name the folder whose files come back.
set -uo pipefail
export PYTHONPATH=. PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT=${OUT:?set OUT}
