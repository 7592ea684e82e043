"""The learned quality predictor's adapters: training data, training, calibration, metrics, checkpoints.

The forward pass that serves the cascade lives in the pure core (``asd.core.mlp``); this package reads the
training data (HDF5), trains the ensemble (torch, CPU), fits the calibration, evaluates it and reads/writes
checkpoints. docs/predictor.md.
"""
