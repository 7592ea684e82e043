#!/usr/bin/env bash
# Device run (one GPU, about 4 minutes on an H100): the split-K decode attention kernel (csrc/decode_attention.cu).
# Builds asd._C for this machine's Python, runs the GPU tests of the kernel and of StaticDecoder, the attention
# benchmark (kernel vs twin vs SDPA), and the --quick decode re-measure of 7B/14B/32B with the kernel and, in
# the same run, with SDPA (scripts/gpu_decode.py records both). docs/gpu.md, "Split-K decode attention".
# Run (repository root):  ASD_GIT_REVISION=<sha> OUT=/some/dir [SIZES=7b,14b,32b] bash scripts/gpu_attention.sh
# Writes OUT/: nvidia_smi.txt, build.log, pytest_gpu.log, attention_gpu.json (pytest-benchmark JSON),
#   decode_quick.json + .log (profile format). Committed records: results/gpu/attention_*, decode_quick_attention_*.
source "$(dirname "$0")/gpu_env.sh"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia_smi.txt"
t0=$(date +%s)
ASD_CUDA_ARCHS=90 python3 setup.py -q build_ext --inplace --build-temp /tmp/asd-build > "$OUT/build.log" 2>&1 \
  || { tail -40 "$OUT/build.log"; exit 1; }
echo "built in $(( $(date +%s) - t0 )) s"
timeout 240 python3 -m pytest tests/models/test_attention.py tests/models/test_cuda_graph.py -q -m gpu \
  -p no:cacheprovider 2>&1 | tee "$OUT/pytest_gpu.log" | tail -15
timeout 150 python3 -m pytest benchmarks/test_bench_attention_gpu.py -q --benchmark-only -p no:cacheprovider \
  --benchmark-json="$OUT/attention_gpu.json" --benchmark-columns=median 2>&1 | tail -25
timeout 300 python3 scripts/gpu_decode.py --sizes "${SIZES:-7b,14b,32b}" --deep "" --fp32-checks "" --quick \
  --out "$OUT/decode_quick.json" 2>&1 | tee "$OUT/decode_quick.log" | tail -22
