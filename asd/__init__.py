"""asd — adaptive speculative decoding.

A hierarchy of LLMs run as a multi-stage draft-verify cascade; a learned quality
predictor and a DP stopping rule decide per input how deep to go (one knob λ).

Importing ``asd`` is cheap: torch, transformers, vLLM, h5py and submitit are only
imported by the modules that use them.
"""

__version__ = "0.1.0"
