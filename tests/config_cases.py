"""The config defect classes: a bad file each and the exact lines ``asd submit`` prints for it.

Used by tests/test_cli.py (which checks the lines, the exit status and that nothing was written) and by
scripts/config_error_table.py (which prints the table of docs/config.md from the same cases).
In ``body`` and ``lines``: ``{cfg}`` is the config's path, ``{out}`` its run folder, ``{tok}`` the testbed
tokenizer folder. ``body`` may be bytes.
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKENIZER = ROOT / "asd" / "testbed" / "tokenizer"

# A valid run of the synthetic step (5 lines), then a testbed hierarchy (9 lines) for the cascade step.
JOBS = "jobs:\n  output_dir: {out}\n  num_samples: 40\n  shards: 2\n  batch_size: 8\n"
HIER = """hierarchy:
  name: testbed
  device: cpu
  gpus_per_node: 1
  tokenizer: {tok}
  stages:
    - {name: s0, model: "testbed:s0", dtype: float32, max_model_len: 512}
    - {name: s1, model: "testbed:s1", dtype: float32, max_model_len: 512}
    - {name: s3, model: "testbed:s3", dtype: float32, max_model_len: 512}
"""
CASCADE_JOBS = JOBS + "  step: asd.pipeline:testbed_cascade\n"  # lines 1-6, hierarchy from line 7


def _bomb() -> str:
    s = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    prev = "a"
    for n in "bcdefghi":
        s += f"{n}: &{n} [{', '.join(['*' + prev] * 9)}]\n"
        prev = n
    return s + "jobs:\n  output_dir: *i\n"


UNKNOWN_KEY_VALID = (
    "account, array_parallelism, batch_size, cpus_per_task, evaluate_step, executor, gpus_per_task, "
    "max_num_timeout, mem_gb, num_samples, output_dir, partition, python, seed, setup, shards, "
    "slurm_signal_delay_s, step, step_options, timeout_min"
)
SECTIONS = "cascade, cell, cost_profiling, data, evaluation, hierarchy, jobs, layout, pipeline, policy, predictor, predictor_data, predictor_training, run, sandbox, synthetic, testbed, training"

# (defect class, body, expected lines after "asd submit: error: ")
CASES: list[tuple[str, str | bytes | None, list[str]]] = [
    # --- the file
    ("config file missing", None, ["{cfg}: config file not found"]),
    ("empty file", "", ["{cfg}: no sections: the file is empty or holds only comments"]),
    ("only comments", "# jobs:\n#   output_dir: x\n", ["{cfg}: no sections: the file is empty or holds only comments"]),
    ("top level not a mapping", "- jobs\n- policy\n", ["{cfg}:1: the top level must be a mapping of sections, got a list"]),
    ("top level a scalar", "jobs\n", ["{cfg}:1: the top level must be a mapping of sections, got the value 'jobs'"]),
    ("invalid UTF-8", JOBS.encode() + b"  seed: \xff\n", ["{cfg}:6: not UTF-8 text (byte 0xff at column 9)"]),
    ("binary file", b"\x7fELF\x02\x01\x01\x00\x00\x00", ["{cfg}:1: a NUL byte: not UTF-8 YAML text (a binary or UTF-16 file?)"]),
    ("control character", JOBS + "  seed: \x1b[31m1\n", ["{cfg}:6: invalid YAML: unacceptable character #x001b: special characters are not allowed"]),
    ("YAML syntax error", JOBS + "  setup: [a, b\n", ["{cfg}:7: invalid YAML: expected ',' or ']', but got '<stream end>'"]),
    ("file too large", "# " + "x" * 70_000 + "\n", ["{cfg}: 70,003 bytes; a config file is at most 65,536 bytes"]),
    # --- duplicates
    ("section given twice", "policy:\n  lam: .inf\n" + JOBS + "policy:\n  lam: 0\n",
     ["{cfg}:8: duplicate key 'policy' (lines 1 and 8)"]),
    ("key given twice", JOBS + "  shards: 4\n", ["{cfg}:6: duplicate key 'shards' (lines 4 and 6)"]),
    ("key merged twice", "x: &a {seed: 1}\ny: &b {seed: 2}\n" + JOBS + "  <<: [*a, *b]\n",
     ["{cfg}:8: key 'seed' merged twice (from lines 1 and 2): which one applies depends on the order of '<<'; "
      "write it once"]),
    ("merge key twice", "x: &a {seed: 1}\n" + JOBS + "  <<: *a\n  <<: *a\n",
     ["{cfg}:8: duplicate merge key '<<' (lines 7 and 8)"]),
    # --- size and shape of the YAML
    ("alias bomb", _bomb(),
     ["{cfg}:6: more than 100,000 values once aliases are expanded (an alias bomb?); refused before expanding"]),
    ("recursive alias", JOBS + "  setup: &s [a, *s]\n", ["{cfg}:6: a recursive alias (a node that contains itself)"]),
    ("nested too deeply", JOBS + "  setup: " + "[" * 70 + "]" * 70 + "\n",
     ["{cfg}:6: nested too deeply (more than 64 levels)"]),
    ("integer literal too large", "jobs:\n  output_dir: {out}\n  num_samples: " + "9" * 5000 + "\n",
     ["{cfg}:3: an integer of 5000 characters: too large for any field"]),
    # --- sections, keys, types
    ("unknown section", JOBS + "polcy:\n  lam: 1\n", ["{cfg}:6: polcy: unknown config section 'polcy'; valid: " + SECTIONS]),
    ("empty section", JOBS + "policy:\n",
     ["{cfg}:6: policy: section 'policy' is empty: give its keys, or delete it to use the defaults"]),
    ("unknown key", JOBS + "  shard: 3\n",
     ["{cfg}:6: jobs.shard: unknown key 'shard' for JobConfig; valid keys: " + UNKNOWN_KEY_VALID]),
    ("wrong type", "jobs:\n  output_dir: {out}\n  num_samples: 7.5\n", ["{cfg}:3: jobs.num_samples: expected int, got 7.5"]),
    ("float too large for an int", "jobs:\n  output_dir: {out}\n  num_samples: 1.0e+300\n",
     ["{cfg}:3: jobs.num_samples: expected int, got 1e+300"]),
    ("int beyond int64", "jobs:\n  output_dir: {out}\n  num_samples: 99999999999999999999\n",
     ["{cfg}:3: jobs.num_samples: 99999999999999999999 does not fit in 64 bits (int64)"]),
    ("huge value in a message", "jobs:\n  output_dir: {out}\n  num_samples: " + "x" * 60_000 + "\n",
     ["{cfg}:3: jobs.num_samples: expected int, got 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx..."]),
    ("rule of one section", "jobs:\n  output_dir: {out}\n  num_samples: 10\n  shards: 11\n",
     ["{cfg}:4: jobs: shards (11) must be <= num_samples (10)"]),
    # --- bounds
    ("size above its bound", JOBS + "  seed: 3\n  timeout_min: 100000\n",
     ["{cfg}:7: jobs.timeout_min: 100000 is above the limit 43,200 (docs/config.md)"]),
    ("samples above the bound", "jobs:\n  output_dir: {out}\n  num_samples: 1000000000\n",
     ["{cfg}:3: jobs.num_samples: 1000000000 is above the limit 100,000,000 (docs/config.md)"]),
    ("negative seed", JOBS + "  seed: -1\n", ["{cfg}:6: jobs.seed: -1 is below the minimum 0"]),
    # --- models and stages
    ("unknown testbed stage", CASCADE_JOBS + HIER.replace('"testbed:s3"', '"testbed:s7"'),
     ["{cfg}:15: hierarchy.stages[2].model: unknown testbed stage 's7'; valid: testbed:s0, testbed:s1, testbed:s2, "
      "testbed:s3"]),
    ("model folder missing", CASCADE_JOBS + HIER.replace('"testbed:s1"', "/nonexistent/ckpt"),
     ["{cfg}:14: hierarchy.stages[1].model: no such model folder '/nonexistent/ckpt'"]),
    ("unknown Qwen2.5 size", CASCADE_JOBS + HIER.replace('"testbed:s0"', "Qwen/Qwen2.5-70B-Instruct"),
     ["{cfg}:13: hierarchy.stages[0].model: Qwen2.5 has no 70B model; published sizes: 0.5B, 1.5B, 3B, 7B, 14B, "
      "32B, 72B"]),
    ("stage index out of range", CASCADE_JOBS + HIER + "policy:\n  name: single\n  stage: 3\n",
     ["{cfg}:18: policy.stage: stage 3 out of range for 3 stages; valid: 0..2 or -1 (the last)"]),
    ("regen drafter out of range", CASCADE_JOBS + HIER + "cascade:\n  gamma: 2\n  regen_drafter: 2\n",
     ["{cfg}:18: cascade.regen_drafter: regen_drafter 2 out of range; valid: 0..1 (γ > 0)"]),
    ("random policy histogram length", CASCADE_JOBS + HIER + "policy:\n  name: random\n  histogram: [1, 1, 1, 1]\n",
     ["{cfg}:18: policy.histogram: 4 entries; the hierarchy has K=3 stages: give K weights"]),
    ("speculative without a drafter", CASCADE_JOBS + HIER + "policy:\n  name: speculative\n",
     ["{cfg}:17: policy.name: policy 'speculative' needs cascade.gamma >= 1 (the drafter's lookahead)"]),
    ("sampling on vLLM", CASCADE_JOBS + HIER.replace("  device: cpu\n", "  backend: vllm\n").replace(
        "gpus_per_node: 1", "gpus_per_node: 4") + "cascade:\n  temperature: 0.7\n",
     ["{cfg}:9: hierarchy.backend: cascade.temperature > 0 needs backend 'hf' (backend 'vllm' cannot)"]),
    ("response longer than the context", CASCADE_JOBS + HIER + "cascade:\n  max_new_tokens: 600\n",
     ["{cfg}:17: cascade.max_new_tokens: max_new_tokens 600 leaves no room for a prompt: the smallest max_model_len "
      "of the stages is 512"]),
    ("step does not resolve", JOBS + "  step: asd.pipeline:testbed_cascad\n",
     ["{cfg}:6: jobs.step: step 'asd.pipeline:testbed_cascad' does not resolve (module 'asd.pipeline' has no "
      "attribute 'testbed_cascad')"]),
    ("step without its section", CASCADE_JOBS,
     ["{cfg}:6: jobs.step: step testbed_cascade needs a 'hierarchy' section (e.g. configs/testbed.yaml's)"]),
    ("policy the step cannot run", CASCADE_JOBS + HIER + "policy:\n  name: oracle\n",
     ["{cfg}:17: policy.name: policy 'oracle' needs every sample's outcome at every stage; testbed_cascade has none"]),
    # --- several problems: one line each
    ("several problems in a section", "jobs:\n  output_dir: {out}\n  seed: x\n  shards: 2.5\n  shardz: 3\n",
     ["{cfg}:5: jobs.shardz: unknown key 'shardz' for JobConfig; valid keys: " + UNKNOWN_KEY_VALID,
      "{cfg}:3: jobs.seed: expected int, got 'x'",
      "{cfg}:4: jobs.shards: expected int, got 2.5"]),
    ("several problems across sections", CASCADE_JOBS + HIER + "policy:\n  name: single\n  stage: 7\n"
     "cascade:\n  max_new_tokens: 50000\n",
     ["{cfg}:18: policy.stage: stage 7 out of range for 3 stages; valid: 0..2 or -1 (the last)",
      "{cfg}:20: cascade.max_new_tokens: 50000 is above the limit 32,768 (docs/config.md)",
      "{cfg}:20: cascade.max_new_tokens: max_new_tokens 50,000 leaves no room for a prompt: the smallest "
      "max_model_len of the stages is 512"]),
]


def render(text: str, cfg: Path, out: Path) -> str:
    return text.replace("{cfg}", str(cfg)).replace("{out}", str(out)).replace("{tok}", str(TOKENIZER))


def write_case(body: str | bytes | None, cfg: Path, out: Path) -> None:
    if body is None:
        return
    if isinstance(body, bytes):
        cfg.write_bytes(body.replace(b"{out}", str(out).encode()))
    else:
        cfg.write_text(render(body, cfg, out), encoding="utf-8")
