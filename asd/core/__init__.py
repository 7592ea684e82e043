"""The pure core: algorithms on numpy arrays only.

No torch, h5py, submitit, vLLM or transformers, and no I/O (tests/test_purity.py
proves it). Adapters at the edges (asd.models, asd.traces, asd.jobs, ...) hold
engines, files and clusters.
"""
