"""Runs as sharded submitit arrays (docs/jobs.md).

``plan`` (JobConfig, shard plan, run folder), ``steps`` (the work of a shard: ``"module:function"``),
``shard`` (one array task, resumable), ``merge`` (shards → one file per run), ``executor`` (submitit:
``slurm`` | ``local``), ``status`` (progress per shard), ``sbatch`` (templates for hand submission).
Importing this package imports neither h5py nor submitit.
"""
