"""Where `extract` runs its forward passes: `--engine local` is `pipeline.extract.loop` in this process;
`--engine ray` sends the same slot-stable batches to Ray Data actors (`ray_data` on the driver,
`ray_worker` in each actor) and keeps this process the single writer of the cache."""
