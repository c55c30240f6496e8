"""Stage 6, predict: new images through a fitted head, or through ImageNet's own classifier.

`images` decodes and batches the user's photos exactly as extraction decodes a dataset;
`extraction` resolves the exact extraction a head was fitted on again; `with_head` applies a head
through it (`fused` a fused head through each member's); `imagenet` gives a backbone's own
ImageNet top-k.
"""
