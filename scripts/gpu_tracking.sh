#!/usr/bin/env bash
# Device run (one GPU): GPU-hours and joules of a short tracked profile run (asd.tracking, NVML's total-energy
# counter) next to nvidia-smi's own reading of the same interval (power.draw sampled every 100 ms, and the
# card's energy field when this nvidia-smi lists one). About 2-3 minutes on an H200.
# Run (repository root):  ASD_GIT_REVISION=<sha> OUT=/some/dir bash scripts/gpu_tracking.sh     (docs/tracking.md)
# Writes OUT/logs/profile-profile_{comprehensive.md,data.json} (the tracking record), OUT/smi_samples.csv,
# OUT/compare.json and prints the comparison.
source "$(dirname "$0")/gpu_env.sh"
mkdir -p "$OUT/logs"
cat > "$OUT/profile.yaml" <<'YAML'
# a short profile: Qwen2.5 7B and 14B shapes, random bf16 weights, few points
hierarchy:
  name: tracking-probe
  backend: hf
  device: cuda
  stages:
    - {name: 7b, model: Qwen/Qwen2.5-7B-Instruct, dtype: bfloat16, max_model_len: 4096}
    - {name: 14b, model: Qwen/Qwen2.5-14B-Instruct, dtype: bfloat16, max_model_len: 4096}
cost_profiling:
  prefill_tokens: [128, 512, 2048]
  decode_batch_sizes: [1, 8, 32]
  decode_context: 512
  decode_steps: 32
  warmup: 2
  repeats: 5
  compile_blocks: false
YAML
nvidia-smi --query-gpu=name,memory.total,driver_version,power.limit --format=csv | tee "$OUT/nvidia_smi.txt"
nvidia-smi --help-query-gpu > "$OUT/smi_help_query.txt" 2>&1
EF=$(grep -o '"[a-z_.]*energy[a-z_.]*"' "$OUT/smi_help_query.txt" | head -1 | tr -d '"')
[ -n "$EF" ] && nvidia-smi --query-gpu=timestamp,index,"$EF" --format=csv > "$OUT/smi_energy_before.csv"
nvidia-smi --query-gpu=timestamp,index,power.draw,utilization.gpu,memory.used --format=csv,nounits -lms 100 \
  > "$OUT/smi_samples.csv" &
SMI=$!
sleep 1
timeout "${PROFILE_TIMEOUT:-400}" python3 -m asd --log-dir "$OUT/logs" profile --config "$OUT/profile.yaml" \
  --random-weights --device cuda --out "$OUT/costs.json" 2>&1 | tee "$OUT/profile.log"
sleep 1
kill "$SMI"; wait "$SMI" 2>/dev/null
[ -n "$EF" ] && nvidia-smi --query-gpu=timestamp,index,"$EF" --format=csv > "$OUT/smi_energy_after.csv"
python3 scripts/gpu_tracking_compare.py "$OUT" | tee "$OUT/compare.txt"
head -30 "$OUT/logs/profile-profile_comprehensive.md"
