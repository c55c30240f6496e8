"""Stage 4, extraction: the run that connects data, backbone and cache.

`run` is `extract` as a sequence of small steps over one run value; `loop` computes the rows in
the slot-stable batches `pipeline.cache.slots` plans, so resumed runs are bitwise equal to clean ones.
"""
