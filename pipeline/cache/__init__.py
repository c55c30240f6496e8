"""Stage 3, the feature cache: how features are keyed, stored, written crash-safely, sharded.

`key` defines the feature key (what changes the numbers); `format` is the HDF5 file layout and
its reading; `builder` assembles what every cache writer writes; `writer`, `segments` and `lock`
write it crash-safely; `slots` plans the forward batch and slot every row is computed in (so
resumed and sharded runs write bitwise the rows of one clean run); `removal` deletes a cache with
what it keeps beside it; `shard` and `merge` split one extraction across machines and join it
again. Listing and choosing among a folder's caches, with their heads, is `pipeline.caches`.
"""
