"""The evaluation grid: every policy of the study on the same prompts, online or replayed (docs/evaluation.md).

``config`` (``EvaluationConfig``, section ``evaluation``; ``CellConfig``, section ``cell`` of one cell's config),
``grid`` (the cells a config expands to), ``prompts`` (a cell's prompts and their scorer: testbed formats or
the benchmarks), ``predictors`` (each cell's ``predictor`` section), ``step`` (the online job step: the cascade on a
batch), ``replay`` (the replay job step: policies evaluated from full per-stage traces), ``fulltrace`` (full
per-stage traces built by running every stage), ``costs`` (the testbed's measured cost table), ``run`` (the
driver: validate, submit the cells as arrays through asd.jobs, merge, ``grid.json``).
Importing this package imports no heavy backend.
"""
