"""bottleneck: transfer learning by feature extraction.

The package is the data flow, one subpackage per stage (see docs/architecture.md):
`data` (find and decode images, layouts, splits, hygiene) -> `backbones` (registry, verified
weights, forward pass) -> `cache` (key, format, crash-safe writer, admin, shards) -> `extract`
(the run that connects them) -> `heads` (fit, metrics, store, leaderboard, predict); `interop`
reads and writes the classic npz file; `cli` is the command line; `atomic` and `errors` are
shared by all.
"""
