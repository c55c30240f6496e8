"""Fine-tuning command: fine-tune."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.cli import limits
from pipeline.cli.plumbing import (
    ExtractProgress,
    cache_argument,
    cache_dir_option,
    command_body,
    json_option,
    resolve_cache,
)
from pipeline.data.views import DEFAULT_VIEW_SEED
from pipeline.extract.options import DEFAULT_BATCH_SIZE
from pipeline.finetune.cut import FROZEN_MODES
from pipeline.finetune.recipe import Recipe

_DEFAULTS = Recipe()


@click.command("fine-tune")
@cache_argument
@click.option("--from-head", "head_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="Head sidecar (.json) fitted on CACHE: the head the fine-tuned model starts from.")
@click.option("--unfreeze", default=None, metavar="BLOCK",
              help="Train this block and every layer after it up to the head's layer (vgg16: block5, block4, ...; "
                   "mobilenet: conv_dw_13, ...; efficientnet_lite0: block7, block6, top).")
@click.option("--from-layer", default=None, metavar="NAME",
              help="Instead of --unfreeze: the first layer to train (see `layers`).")
@click.option("--views", type=click.IntRange(0, limits.MAX_VIEWS), default=0, show_default=True, metavar="K",
              help="Cache K augmented views per image at the boundary and train on one of them per image per epoch.")
@click.option("--view-seed", type=limits.SEED, default=DEFAULT_VIEW_SEED, show_default=True, help="Seed of the views.")
@click.option("--epochs", type=click.IntRange(1, limits.MAX_EPOCHS), default=_DEFAULTS.epochs, show_default=True,
              help="Most epochs to train (early stopping may end sooner).")
@click.option("--patience", type=click.IntRange(1, limits.MAX_EPOCHS), default=_DEFAULTS.patience, show_default=True,
              help="Stop after this many epochs without a better one (see --min-delta).")
@click.option("--min-delta", type=click.FloatRange(0, limits.MAX_MIN_DELTA), default=_DEFAULTS.min_delta,
              show_default=True,
              help="The best epoch is the one of lowest validation loss, where an epoch counts as better only when "
                   "it lowers the best loss so far by more than this; the model keeps the best epoch's weights.")
@click.option("--batch-size", type=limits.BATCH_SIZE, default=_DEFAULTS.batch_size, show_default=True,
              help="Training batch size.")
@click.option("--backbone-lr", type=limits.LEARNING_RATE,
              default=_DEFAULTS.backbone_learning_rate, show_default=True,
              help="Adam learning rate of the unfrozen backbone layers.")
@click.option("--head-lr", type=limits.LEARNING_RATE, default=_DEFAULTS.head_learning_rate,
              show_default=True, help="Adam learning rate of the head.")
@click.option("--seed", type=limits.SEED, default=_DEFAULTS.seed, show_default=True,
              help="Seed of the batch order and views.")
@click.option("--frozen-mode", type=click.Choice(FROZEN_MODES), default="inference", show_default=True,
              help="How the frozen layers run; a cache is exact for inference mode only (training is refused when "
                   "they contain Dropout or BatchNorm).")
@click.option("--extract-batch-size", type=limits.BATCH_SIZE, default=DEFAULT_BATCH_SIZE, show_default=True,
              help="Images per forward pass while building the boundary cache.")
@cache_dir_option
@json_option
@command_body
def fine_tune_command(cache, head_path, unfreeze, from_layer, views, view_seed, epochs, patience, min_delta,
                      batch_size, backbone_lr, head_lr, seed, frozen_mode, extract_batch_size, cache_dir, as_json):
    """Fine-tune the top of the backbone with HEAD, from a cache of the boundary layer (built when missing).

    Re-running an interrupted fine-tune continues from its last completed epoch."""
    from pipeline.finetune.run import FineTuneOptions, fine_tune

    if (unfreeze is None) == (from_layer is None):
        raise click.UsageError("pass exactly one of --unfreeze BLOCK or --from-layer NAME")
    recipe = Recipe(backbone_learning_rate=backbone_lr, head_learning_rate=head_lr, batch_size=batch_size,
                    epochs=epochs, patience=patience, min_delta=min_delta, seed=seed)
    options = FineTuneOptions(unfreeze=unfreeze, from_layer=from_layer, views=views, view_seed=view_seed,
                              frozen_mode=frozen_mode, recipe=recipe, extract_batch_size=extract_batch_size)
    progress = ExtractProgress("boundary cache")
    try:
        report = fine_tune(resolve_cache(cache, cache_dir), head_path, cache_dir, options, extract_progress=progress,
                           epoch_progress=None if as_json else _print_epoch)
    finally:
        progress.close()
    boundary = _boundary_size(report, built=progress.done > 0)
    if not as_json:
        click.echo(boundary["text"])
        _print_report(report)
    return {**report.to_dict(), "boundary_megabytes": boundary["megabytes"], "boundary_built": boundary["built"]}


def _boundary_size(report, built: bool) -> dict:
    """How large the boundary cache is, and whether this run extracted rows into it (a new cache says so)."""
    from pipeline.caches.admin import MEGABYTE

    path = Path(report.boundary_cache)
    megabytes = path.stat().st_size / MEGABYTE
    how = "built now" if built else "reused"
    return {"megabytes": megabytes, "built": built,
            "text": f"Boundary   {path.name}: {megabytes:.1f} MB on disk, {how} (`cache ls` marks it; `cache rm` "
                    f"of {Path(report.sidecar_path).parent.name}.h5 removes it with its heads)"}


def _print_epoch(record: dict) -> None:
    trained = "" if record["loss"] is None else (f"train loss {record['loss']:.4f}  {record['seconds']:.1f} s "
                                                 f"({record['rows_per_second']:.1f} rows/s)  ")
    label = "start" if record["epoch"] == 0 else f"epoch {record['epoch']}"
    # `+ 0.0` prints a log loss of exactly zero (-log 1 = -0.0) as 0.0000, not -0.0000
    click.echo(f"  {label:<9} {trained}valid loss {record['valid_loss'] + 0.0:.4f}  top1 {record['valid_top1']:.3f}  "
               f"mean/class {record['valid_mean_per_class_accuracy']:.3f}", err=True)


def _print_report(report) -> None:
    from pipeline.heads.metrics import summary_line

    cut = report.cut
    click.echo(f"Tuned      {len(cut['tuned_layers'])} layers ({cut['tuned_layers'][0]} .. {cut['top_layer']}) on "
               f"{Path(report.boundary_cache).name}, minimising the {report.objective}")
    resumed = f", resumed after epoch {report.resumed_from}" if report.resumed_from else ""
    click.echo(f"Epochs     best {report.best_epoch} of {report.epochs_run}{resumed}: {report.selection}")
    for epoch, drop in report.smaller_drops:
        click.echo(f"           epoch {epoch} was lower by {drop:.4f} only, not more than the minimum drop, so "
                   f"epoch {report.best_epoch} stays the best")
    for split in ("train", "valid", "test"):
        if split in report.metrics:
            click.echo(f"  {split:<6} {summary_line(report.metrics[split])}")
    rows = report.comparison["metrics"]
    click.echo(f"Valid      vs {report.comparison['head']}: " + ", ".join(
        f"{name} {values['fine_tuned'] + 0.0:.3f} (head {values['head'] + 0.0:.3f})" for name, values in rows.items()
        if None not in values.values()))
    if report.views:
        click.echo(f"Views      {report.views}")
    if report.warning:
        click.echo(f"Warning    {report.warning}", err=True)
    click.echo(f"Saved {report.sidecar_path}")


#: The commands this module adds to the group.
COMMANDS = (fine_tune_command,)
