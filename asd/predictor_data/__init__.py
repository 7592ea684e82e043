"""The quality predictor's training set: the full trace of every prompt through every stage.

``asd generate-data --config configs/predictor_data.yaml`` (asd/commands/generate_data.py) runs the jobs
layer with the step ``asd.predictor_data.steps:testbed`` (or ``:benchmarks``): for each batch of prompts,
every stage k generates its own response y_k, every later stage m verifies y_k in one teacher-forced pass,
and the cascade's own feature code records stage k's features. Modules:

- ``config``: the ``predictor_data`` config section;
- ``trace``: the full trace of one batch (engines in, per-sample arrays out);
- ``schema``: the HDF5 training-set schema (docs/predictor_data.md), its reader and checks;
- ``steps``: the jobs-layer steps (prompts, engines cached per process, scoring);
- ``sources``: benchmark prompts of the non-test splits (the Qwen2.5 hierarchy).
"""
