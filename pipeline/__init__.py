"""bottleneck: transfer learning by feature extraction.

Stages, one module each (see their docstrings for the contracts): `layouts` read datasets into a
`dataset.DatasetIndex`; `hashing` and `splits` give images their identity and split; `backbones`,
`weights` and `forward` turn pixels into features; `cache`/`cache_writer` store them crash-safely;
`features`, `heads`, `fitting`, `evaluate` and `report` fit and compare classifier heads;
`predict` applies a head to new images. `cli.py` at the repository root is the user interface.
"""
