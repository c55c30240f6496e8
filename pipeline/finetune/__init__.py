"""Stage 6, fine-tuning: the top layers of the backbone trained with a head, at cache speed.

With layers 1..k frozen and in inference mode, the output of layer k is a fixed function of the
image, so it is cached like any feature layer (`extract --layer k`, the boundary cache) and layers
k+1..n are trained together with a fitted head on the cached tensors: exactly the computation of
fine-tuning the whole network with 1..k frozen, without running 1..k (or decoding an image) in any
epoch. `cut` decides k from `--unfreeze` / `--from-layer`; `model` builds layers k+1..n of the same
backbone, with its weights, plus the head; `batches` streams training batches from the cache;
`train` runs the epochs (discriminative learning rates, early stopping, best weights kept);
`checkpoint` makes every finished epoch survive a crash; `run` is `fine-tune` end to end.
"""
