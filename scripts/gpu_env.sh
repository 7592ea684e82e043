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
# host_build_cpu: with BUILD=1, build asd._C (CPU kernels only) into the checkout first, log in $OUT/build.log
# (the host_*.sh drivers call it; the device copy has no build of its own)
host_build_cpu() {
    [ -n "${BUILD:-}" ] || return 0
    local t0; t0=$(date +%s)
    ASD_BUILD_CUDA=off python3 setup.py -q build_ext --inplace --build-temp /tmp/asd-build-cpu > "$OUT/build.log" 2>&1
    echo "build rc $? after $(( $(date +%s) - t0 )) s" | tee -a "$OUT/build.log"
}
