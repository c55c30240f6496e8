"""Stage 5, heads: classifiers fitted on cached features, scored honestly, stored, compared.

`registry` names every head with its help text; `kinds/` holds one module per head family;
`features` loads a cache's features per split; `fitting` fits, scores and saves one head;
`metrics` and `plots` are what a fit reports; `record` is a head's sidecar as a value (`HeadRecord`),
which `store` writes and reads as it saves and finds heads. Ranking them is the report stage's
(`pipeline.report.leaderboard`); applying one to new images, predict's.
"""
