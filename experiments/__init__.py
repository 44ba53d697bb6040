"""Experiments: runs that make data with the generators, train on it and measure what it taught.

This package sits above both: it calls `generators` (to make datasets) and `trainer` (to train
and evaluate), so that the trainer keeps reading only the data contract and the generators stay
free of torch.
"""
