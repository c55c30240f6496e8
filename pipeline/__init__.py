"""bottleneck: transfer learning by feature extraction.

The package is the data flow, one subpackage per stage (docs/architecture.md has a line per
module). Imports run down the numbers: a stage uses its own and earlier ones, never a later one
(tests/test_architecture.py checks every import).

    0  atomic, errors, npz_safety   atomic file writes; the errors and their exit codes; safe .npz reads
    1  data        find images, give them identity and splits, decode them (DatasetIndex)
    2  backbones   frozen ImageNet CNNs, verified weights, the forward pass
    3  cache       one feature cache: key, HDF5 format, crash-safe writer, shards and merge
    4  extract     the run that connects data, backbone and cache
    5  heads       classifiers fitted on cached features, scored, stored (sidecars)
    6  peers that build on the heads (and may use each other, without cycles):
       predict     new photos through a head, or through ImageNet's classifier
       finetune    the top of the backbone trained with a head, on a boundary cache
       export      a head with its backbone as one deployable model, verified
       explain     ideal class images, adversarial examples, feature maps
       report      the text leaderboard, the next rung, the HTML page
       audit       near-duplicates, leakage, label issues, outliers, the map, neighbours
       search      the best recipe on validation within a time budget
       interop     the classic bottleneck .npz files, out of and into a cache
       caches      a folder's caches with their heads: choose, list, remove
    7  api, quickstart   the notebook API; the end-to-end demo
    8  cli         the command line: the only code that reads arguments or prints
"""
