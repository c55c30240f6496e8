"""Stage 2, backbones: frozen ImageNet CNNs, their verified weights, and the forward pass.

`registry` lists every backbone as data (constructor, preprocessing, sizes, default layer,
reference check, offline weight sources); `weights` resolves `--weights` to a verified file and
fingerprints the loaded tensors; `sources/` holds one module per offline weight source;
`forward` turns uint8 pixels into features; `precision` picks the compute precision;
`tf_runtime` imports TensorFlow quietly; `inventory` is the `weights` listing.
"""
