"""Audit commands: audit (near-duplicates, leakage-aware scores, label issues, outliers, map), neighbours."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.audit.neighbours import DEFAULT_NEIGHBOURS
from pipeline.audit.outliers import OUTLIER_MADS
from pipeline.cache.near_duplicates import MAX_HASH_DISTANCE, NEAR_DUPLICATE_SIMILARITY
from pipeline.cli import limits
from pipeline.cli.plumbing import cache_argument, cache_dir_option, command_body, json_option, resolve_cache

#: Findings listed per kind in the text output (--json lists every one).
SHOWN = 15
NEIGHBOURS_SUFFIX = ".neighbours.png"


@click.command()
@cache_argument
@click.option("--threshold", type=click.FloatRange(-1.0, 1.0), default=NEAR_DUPLICATE_SIMILARITY, show_default=True,
              help="Cosine similarity (centred, average-pooled features) at which two images are near-duplicates; "
                   "calibrated on real photos (docs/audit.md).")
@click.option("--outlier-mads", type=click.FloatRange(0.0, limits.MAX_OUTLIER_MADS), default=OUTLIER_MADS,
              show_default=True,
              help="Robust standard deviations below typical that make an image an outlier.")
@click.option("--no-map", is_flag=True, help="Skip the 2-D map (t-SNE) that `report --html` shows.")
@cache_dir_option
@json_option
@command_body
def audit(cache, threshold, outlier_mads, no_map, cache_dir, as_json):
    """Audit the images of CACHE from their cached features: near-duplicates within and across splits, every
    head's test score without leaked test images, label-issue candidates, outliers and a map.

    The findings are saved beside the cache's heads; `report` and `report --html` show them.
    """
    from pipeline.audit.leakage import score_line
    from pipeline.audit.run import run_audit

    result = run_audit(resolve_cache(cache, cache_dir), threshold, not no_map, outlier_mads)
    if not as_json:
        crossing = sum(1 for pair in result.near_duplicates if pair.crosses_splits)
        click.echo(f"Audited {result.images} images of {result.cache} in {sum(result.seconds.values()):.1f} s")
        click.echo(f"\nNear-duplicates  {len(result.near_duplicates)} pairs at cosine >= {result.threshold:.2f} "
                   f"or pixel hash distance <= {MAX_HASH_DISTANCE} ({crossing} across splits; "
                   f"{len(result.leaked_test)} test images have one in train/valid; {result.hashed} of "
                   f"{result.images} files hashed)")
        for pair in result.near_duplicates[:SHOWN]:
            bits = f"  hash {pair.hash_distance:2d}" if pair.hash_distance is not None else ""
            click.echo(f"  {pair.similarity:.3f}{bits}  {pair.a} [{pair.splits[0] or '-'}]  ~  {pair.b} "
                       f"[{pair.splits[1] or '-'}]")
        _more(len(result.near_duplicates))
        if result.leakage_aware:
            click.echo("\nLeakage-aware test scores")
            for row in result.leakage_aware:
                click.echo(f"  {score_line(row)}")
        click.echo(f"\nLabel issues     {len(result.label_issues)} candidates (confident learning on out-of-fold "
                   "probabilities; score = p(given label), lowest first)")
        for issue in result.label_issues[:SHOWN]:
            click.echo(f"  {issue.score:.3f}  {issue.path}: given {issue.given}, suggested {issue.suggested}")
        _more(len(result.label_issues))
        click.echo(f"\nOutliers         {len(result.outliers)} images far from every other image and class")
        for outlier in result.outliers[:SHOWN]:
            click.echo(f"  {outlier.deviations:5.1f} MADs  {outlier.path} ({outlier.label}; nearest class "
                       f"{outlier.nearest_class}, cos {outlier.class_similarity:.2f})")
        _more(len(result.outliers))
        click.echo(f"\nSaved {result.record}; `report {result.cache} --html` shows the map")
    return result.to_dict()


def _more(count: int) -> None:
    if count > SHOWN:
        click.echo(f"  ... and {count - SHOWN} more (--json lists every one)")


@click.command()
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--cache", "cache", type=click.Path(path_type=Path), default=None, metavar="CACHE",
              help="The cache to search: a file, a directory holding one, or a spec such as pets/vgg16 "
                   "(default: the one --cache-dir holds).")
@click.option("-k", "k", type=click.IntRange(1, limits.MAX_TOP_K), default=DEFAULT_NEIGHBOURS, show_default=True,
              help="How many neighbours.")
@click.option("--png", "png_out", is_flag=False, flag_value="", default=None, metavar="[OUT]",
              help=f"Also draw the photo and its neighbours as a PNG strip (default: <image stem>{NEIGHBOURS_SUFFIX} "
                   "in the current folder).")
@cache_dir_option
@json_option
@command_body
def neighbours(image, cache, k, png_out, cache_dir, as_json):
    """The cached images most similar to IMAGE, its features computed exactly as the cache's were."""
    from pipeline.audit.neighbours import neighbours as find
    from pipeline.audit.neighbours import write_strip

    features, found = find(image, resolve_cache(cache, cache_dir), cache_dir, k)
    written = None
    if png_out is not None:
        out = Path(png_out) if png_out else Path(image.stem + NEIGHBOURS_SUFFIX)
        written = write_strip(out, image, found, features.info.data_root)
    if not as_json:
        click.echo(f"Nearest cached images to {image} in {features.info.path.name}:")
        for rank, neighbour in enumerate(found, start=1):
            click.echo(f"  {rank:2d}. {neighbour.similarity:.3f}  {neighbour.path}  {neighbour.label} "
                       f"[{neighbour.split or '-'}]")
        if written is not None:
            click.echo(f"\nStrip  {written}")
    return {"image": str(image), "cache": str(features.info.path), "neighbours": [n.to_dict() for n in found],
            "png": str(written) if written else None}


#: The commands this module adds to the group.
COMMANDS = (audit, neighbours)
