"""Stage 6, explain: looking inside a classifier: ideal class images, adversarial examples, feature maps.

Every command here works on a differentiable path from pixels to class probabilities
(`pipeline.explain.classifier`): a fitted head of ours through its backbone, or a backbone's own
ImageNet classifier. They all work in pixel space [0, 255] with the backbone's preprocessing
inside the differentiated graph, and write PNGs plus a JSON sidecar (`pipeline.explain.outputs`).
"""
