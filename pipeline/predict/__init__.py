"""Stage 6, predict: new images through a fitted head, or through ImageNet's own classifier.

`images` decodes and batches the user's photos exactly as extraction decodes a dataset;
`with_head` applies a head through the extraction it was fitted on; `imagenet` gives a
backbone's own ImageNet top-k.
"""
