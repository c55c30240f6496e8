"""Interop with the classic bottleneck files: `DogVGG16Data.npz` out of and into a cache."""
