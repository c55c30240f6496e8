"""Stage 4, extraction: the run that connects data, backbone and cache.

`run` is `extract` as a sequence of small steps over one run value; `slots` gives every image a
fixed batch position so resumed runs are bitwise equal to clean ones.
"""
