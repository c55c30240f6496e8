"""Stage 1, data: find a dataset's images, give each an identity and a split, decode pixels.

`layouts/` reads the on-disk layouts people have (one module per layout) into a
`dataset.DatasetIndex`; `hashing` gives every file its content identity; `splits` carves the
splits a layout lacks; `hygiene` finds leakage and conflicts; `images` and `feeder` decode files
by content into fixed-size uint8 pixels; `inspection` reports all of it without a model.
"""
