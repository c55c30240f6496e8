"""Stage 6, interop: the classic bottleneck files, `DogVGG16Data.npz` out of and into a cache."""
