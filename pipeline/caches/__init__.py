"""Stage 6, caches: a folder of caches as the commands see it, the heads fitted on them included.

`select` chooses one cache among a folder's by what it holds (setting aside the boundary caches
that fine-tuned heads read); `admin` lists, describes and removes caches (`cache ls / show / rm`)
with their heads. One cache file itself is the `cache` stage's; this stage sits above `heads`
because a cache's heads decide what is listed, chosen and removed with it.
"""
