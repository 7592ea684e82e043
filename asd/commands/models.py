"""``asd models download|verify|plan``: fetch, check and place a hierarchy's checkpoints (docs/models.md).

    asd models download --storage-path /scratch/models              # configs/qwen2.5_models.yaml, pinned revisions
    asd models verify /scratch/models                                # config, tokenizer, every shard vs the index
    asd models verify asd/testbed/weights --config configs/testbed.yaml
    asd models plan --gpus 8 --gpu-mem 80                            # memory per stage, a TP placement that fits

verify and plan work offline; download fails at once, with the reason, when the Hub cannot be reached.
Exit status: 0 ok, 1 verify found a problem / plan found no placement, 2 bad input.
"""

from __future__ import annotations

import argparse
import json

DEFAULT_CONFIG = "configs/qwen2.5_models.yaml"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "models",
        help="download / verify / plan the hierarchy's checkpoints",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    d = sub.add_parser("download", help="fetch every stage at its pinned revision (huggingface_hub, resumable)")
    d.add_argument("--storage-path", required=True, metavar="DIR", help="folders DIR/<hub id> are created here")
    d.add_argument("--config", default=DEFAULT_CONFIG, help="YAML with a hierarchy section")
    d.add_argument("--stage", action="append", help="only this stage (repeatable)")
    d.add_argument("--dry-run", action="store_true", help="list files and sizes, check the space, fetch nothing")
    d.set_defaults(func=_download)
    v = sub.add_parser("verify", help="check config, tokenizer and every safetensors shard of each stage")
    v.add_argument("storage", metavar="DIR", help="the storage path (DIR/<hub id>, or DIR/<stage> for testbed:)")
    v.add_argument("--config", default=DEFAULT_CONFIG, help="YAML with a hierarchy section")
    v.add_argument("--json", default=None, metavar="FILE", help="also write the report as JSON")
    v.set_defaults(func=_verify)
    q = sub.add_parser("plan", help="memory per stage and a tensor-parallel placement on N GPUs")
    q.add_argument("--gpus", type=int, required=True, help="GPUs available (one node)")
    q.add_argument(
        "--gpu-mem", type=float, required=True, metavar="GB", help="memory per GPU in GiB (80 for A100/H100-80GB)"
    )
    q.add_argument("--config", default=DEFAULT_CONFIG, help="YAML with a hierarchy section")
    q.add_argument(
        "--batch", type=int, default=None, help="sequences in the KV cache (default hierarchy.plan_batch_size)"
    )
    q.add_argument("--utilization", type=float, default=0.9, help="fraction of GPU memory usable (vLLM's default 0.9)")
    q.add_argument("--reserve-gb", type=float, default=2.0, help="GiB per GPU kept for activations, CUDA, NCCL")
    q.add_argument("--storage-path", default=None, metavar="DIR", help="read shapes from DIR/<hub id>/config.json")
    q.add_argument("--json", default=None, metavar="FILE", help="also write the plan as JSON")
    q.set_defaults(func=_plan)


def _hier(path: str):
    from asd.run_config import load_section

    return load_section(path, "hierarchy")


def _write_json(path: str, rec: dict) -> None:
    from pathlib import Path

    from asd.provenance import provenance

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({**provenance(schema_version=1), **rec}, indent=1, default=str) + "\n")


def _download(args) -> int:
    from pathlib import Path

    from asd.models.download import check_space, download, hub_stages, plan_download
    from asd.models.verify import format_report, verify_hierarchy
    from asd.tracking import log_section

    hier = _hier(args.config)
    root = Path(args.storage_path)
    if not hub_stages(hier):
        print(f"nothing to download: every stage of {args.config} is embedded (testbed:) or a local folder")
        return 0
    if args.dry_run:
        rows = plan_download(hier, root, args.stage)
        check_space(sum(r["to_fetch"] for r in rows), root)
    else:
        rows = download(hier, root, args.stage)
    for r in rows:
        print(
            f"{r['stage']:>6}  {r['repo']}@{r['revision'][:12]}  {r['files']} files, {r['bytes'] / 2**30:.1f} GiB"
            f" ({r['to_fetch'] / 2**30:.1f} GiB {'to fetch' if args.dry_run else 'fetched'})  → {r['folder']}"
        )
    log_section("Download", f"storage path {root}", data=rows)
    if args.dry_run:
        return 0
    rep = verify_hierarchy(hier, root)
    print(format_report(rep))
    return 0 if rep.ok else 1


def _verify(args) -> int:
    from pathlib import Path

    from asd.models.verify import format_report, verify_hierarchy
    from asd.tracking import log_section

    if not Path(args.storage).is_dir():
        raise FileNotFoundError(f"{args.storage}: no such folder")
    hier = _hier(args.config)
    rep = verify_hierarchy(hier, args.storage)
    print(format_report(rep))
    d = rep.to_dict()
    log_section("Verify", f"{args.storage} against {args.config}: {'ok' if rep.ok else 'FAILED'}", data=d["stages"])
    if args.json:
        _write_json(args.json, d)
    return 0 if rep.ok else 1


def _plan(args) -> int:
    from asd.models.placement import format_plan, plan
    from asd.tracking import log_section

    hier = _hier(args.config)
    p = plan(
        hier,
        args.gpus,
        args.gpu_mem,
        batch=args.batch,
        utilization=args.utilization,
        reserve_gib=args.reserve_gb,
        storage=args.storage_path,
    )
    text = format_plan(p, hier.name)
    print(text)
    d = p.to_dict()
    log_section("Plan", "```\n" + text + "\n```", data=d["stages"])
    if args.json:
        _write_json(args.json, d)
    return 0 if p.placement is not None else 1
