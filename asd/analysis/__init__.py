"""Analysis of an evaluation run folder: statistics, figures, the report, the Qwen2.5-scale projection.

``asd analyze RUN`` (asd.analysis.analyze) and ``asd report RUN`` (asd.analysis.report); methods in
docs/analysis.md. numpy throughout; scipy, h5py, matplotlib and torch only inside the functions that use them.
"""
