"""Stage 6, search: `search`, the best transfer recipe for a dataset, chosen on validation within a time budget.

The stage drives the others through their public entry points: every extraction is a normal
`extract` run (`pipeline.extract.run.run_extract`: cache keys, crash safety, reuse), every head a
normal `fit-head` fit (`pipeline.heads.fitting`), the winner a normal saved head (or fused head).

    space.py      the candidates: extraction configurations x head recipes
    cost.py       seconds per candidate, from measured throughput
    scheduler.py  which candidate next: cheap ones first, then rungs of successive halving
    record.py     the search record (JSON beside the heads): every candidate, resumable
    plan.py       one extraction's cache path, key and rows still missing
    final.py      the winner fitted on the whole cache, test scored once, saved as a head
    run.py        `run_search` end to end
"""
