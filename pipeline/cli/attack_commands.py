"""The `attack` command: adversarial examples by projected gradient descent, judged on the saved PNGs."""

from __future__ import annotations

import time
from pathlib import Path

import click

from pipeline.backbones.registry import BACKBONES
from pipeline.cli import limits
from pipeline.cli.plumbing import ExtractProgress, cache_dir_option, command_body, display_path, json_option
from pipeline.errors import UsageError
from pipeline.explain.attack import DEFAULT_EPS, DEFAULT_STEPS, parse_eps, parse_levels
from pipeline.explain.attack_run import DEFAULT_ATTACK_BATCH, UNTARGETED


class LevelsType(click.ParamType):
    """Pixel levels written as a fraction of the range ("8/255") or a number of levels ("8"); commas list several."""

    name = "LEVELS"

    def __init__(self, parser, several: bool):
        self.parser = parser
        self.several = several

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        parts = [part for part in str(value).split(",") if part.strip()] if self.several else [str(value)]
        try:
            return tuple(self.parser(part, param.opts[0] if param else "value") for part in parts)
        except UsageError as error:
            self.fail(str(error), param, ctx)


class AttackProgress(ExtractProgress):
    """The progress bar in image-steps (one forward + backward pass of one image) per second."""

    def _rate(self, _item):
        elapsed = time.perf_counter() - (self.started or time.perf_counter())
        return f"{self.done / elapsed:.2f} steps/s" if elapsed > 0 and self.done else None


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--head", "head_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Head sidecar (.json) printed by fit-head: attack image -> backbone -> this head.")
@click.option("--imagenet", type=click.Choice(list(BACKBONES)), default=None,
              help="Attack a backbone's own ImageNet classifier instead (mobilenet, efficientnet_lite0 work offline).")
@click.option("--target", required=True,
              help=f"Class to push every image to (targeted), or '{UNTARGETED}' to move it off its top-1.")
@click.option("--eps", "eps_values", type=LevelsType(parse_eps, several=True), multiple=True,
              default=[DEFAULT_EPS], show_default=True,
              help="L-infinity budget: a fraction of the 255 range (8/255 = 8 pixel levels) or pixel levels (8); "
                   "several (repeat, or 2/255,4/255,8/255) give the success-rate curve.")
@click.option("--step", type=LevelsType(parse_levels, several=False), default=None,
              help="Step size, same units as --eps (default 2.5 * eps / steps).")
@click.option("--steps", type=click.IntRange(1, limits.MAX_STEPS), default=DEFAULT_STEPS, show_default=True,
              help="Gradient steps per image (each one forward + backward pass).")
@click.option("--early-stop/--no-early-stop", default=True, show_default=True,
              help="Stop an image at the first rounded candidate that succeeds.")
@click.option("--random-start", is_flag=True, help="Start from a seeded uniform point inside the budget.")
@click.option("--seed", type=limits.SEED, default=0, show_default=True, help="Seed of the random start.")
@click.option("--check-head", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Second head: do the adversarial PNGs fool it too (transfer)?")
@click.option("--check-imagenet", type=click.Choice(list(BACKBONES)), default=None,
              help="Second classifier for the transfer check: a backbone's ImageNet classifier.")
@click.option("--batch-size", type=limits.BATCH_SIZE, default=DEFAULT_ATTACK_BATCH, show_default=True,
              help="Images attacked together.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the result folder (default: explain/ beside the head, where report --html looks).")
@cache_dir_option
@json_option
@command_body
def attack(images, head_path, imagenet, target, eps_values, step, steps, early_stop, random_start, seed, check_head,
           check_imagenet, batch_size, out_dir, cache_dir, as_json):
    """Adversarial examples: nudge IMAGES (files or folders) within an L-infinity budget until the
    classifier says TARGET, by projected gradient descent in pixel space; judged on the saved PNGs."""
    from pipeline.explain.attack_run import AttackPlan, resolve_class, run_attack
    from pipeline.explain.classifier import load_classifier

    if (head_path is None) == (imagenet is None):
        raise click.UsageError("pass either --head HEAD (a fitted head) or --imagenet BACKBONE")
    if check_head is not None and check_imagenet is not None:
        raise click.UsageError("pass at most one of --check-head and --check-imagenet")
    budgets = tuple(sorted({b.levels: b for group in eps_values for b in group}.values(), key=lambda b: b.levels))
    plan = AttackPlan(target=None if target.lower() == UNTARGETED else target, budgets=budgets, steps=steps,
                      step=step[0] if step else None, early_stop=early_stop, random_start=random_start, seed=seed,
                      batch_size=batch_size)
    classifier = load_classifier(head=head_path, imagenet=imagenet, cache_dir=cache_dir)
    if plan.target is not None:
        resolve_class(classifier, plan.target)  # an unknown class fails before any image is read
    check = None
    if check_head is not None or check_imagenet is not None:
        check = load_classifier(head=check_head, imagenet=check_imagenet, cache_dir=cache_dir)
    progress = AttackProgress("attacking")
    try:
        result = run_attack(classifier, images, plan, out_dir, check, progress)
    finally:
        progress.close()
    if not as_json:
        _print(result, classifier, check)
    return result


def _print(result: dict, classifier, check) -> None:
    several = len(result["per_eps"]) > 1
    click.echo(f"Attack {'-> ' + result['target'] if result['target'] != UNTARGETED else 'untargeted'} "
               f"on {classifier.name}")
    for row in result["per_image"]:
        before, after = row["original_top3"][0], row["final_top3"][0]
        budget = f" [eps {row['eps']:g}/255]" if several else ""
        line = (f"{display_path(row['path'])}{budget}: "
                f"{before['label']} {before['probability']:.3f} -> {after['label']} {after['probability']:.3f}  "
                f"{'success' if row['success'] else 'failed'}  {row['goal_class']} "
                f"{row['goal_probability_before']:.3f} -> {row['goal_probability_after']:.3f}  "
                f"Linf {row['linf']:g}  L2 {row['l2']:.1f}  steps {row['steps_used']}")
        if "check" in row:
            c = row["check"]
            line += (f"  | check: {c['original_top1']['label']} -> {c['adversarial_top1']['label']}"
                     f"{' (fooled)' if c['top1_changed'] else ''}")
        click.echo(line)
    for problem in result["unreadable"]:
        click.echo(f"{display_path(problem['path'])}: cannot read ({problem['error']})")
    click.echo(f"{'eps':>9} {'success':>13} {'top-1 kept':>10} {'Linf max':>9} {'L2 mean':>9} {'steps':>6} "
               f"{'seconds':>8}" + (f" {'check fooled':>13}" if check is not None else ""))
    for s in result["per_eps"]:
        click.echo(f"{s['eps']:>5g}/255 {s['successes']:>4}/{s['images']:<3} {s['success_rate']:>4.0%} "
                   f"{s['original_kept_rate']:>10.0%} {s['linf_max']:>9g} {s['l2_mean']:>9.1f} "
                   f"{s['steps_mean']:>6.1f} {s['seconds']:>8.1f}"
                   + (f" {s['check_fooled']:>5}/{s['images']:<3}{s['check_fooled_rate']:>4.0%}" if check else ""))
    click.echo(f"Columns    success: {'target reached' if result['target'] != UNTARGETED else 'top-1 changed'} "
               "(judged on the saved PNG); top-1 kept: images still given their original top-1 (robust accuracy "
               "against the clean prediction); Linf in pixel levels of 255; steps: mean steps used")
    if check is not None:
        resized = any(r.get("check", {}).get("resized") for r in result["per_image"])
        click.echo(f"Check      {check.name}" + (" (adversarial PNGs resized to its input as predict would)"
                                                 if resized else ""))
    click.echo(f"Saved      {result['result_dir']}")


#: The commands this module adds to the group.
COMMANDS = (attack,)
