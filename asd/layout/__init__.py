"""The co-located layout: every stage of the hierarchy resident at once on the devices of one node, each with its
tensor-parallel degree, and the cascade's recorded call sequence replayed between them (docs/layout.md).

- ``config``: ``LayoutConfig`` (YAML section ``layout``): the stages, their TP degrees and ranks.
- ``routes``: the route file: routes, token counts and batches of a testbed run, read from its HDF5 traces.
- ``schedule``: the route file → the cascade's calls (draft, verification passes, regeneration) and the final
  stage alone's; an estimate of both from a cost table (pure).
- ``runner``: one torch.distributed world, one sub-group per stage; measures per-stage costs while all stages
  are resident and replays the calls (``python -m asd.layout run`` under torchrun).
- ``report``: the tables and the figure of a layout record.
"""
