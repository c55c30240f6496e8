"""`attack`: images -> PGD (`pipeline.explain.attack`) -> saved files -> results judged on the files.

Contract of `run_attack(classifier, paths, plan, ...)`:
- Images (files, or folders searched recursively) are decoded exactly as `predict` decodes them
  for this classifier (its `ResizeSpec`) and attacked at its input size, a batch at a time.
- For every budget in `plan.budgets` and every image, the final rounded candidate is written as
  `NAME-adversarial.png` (`NAME-eps<levels>-adversarial.png` with several budgets), read back,
  and classified again: success, top-3, target probability and the distances are computed from
  the pixels read back from the file, never from the float iterate. `NAME-original.png` is the
  decoded input at the input size; `NAME-side-by-side.png` shows original | adversarial |
  amplified difference.
- With a second classifier (`check`), the adversarial PNG is decoded for it like `predict` would
  (resized when its input size or policy differs, which the result says) and we report whether it
  is fooled too: its top-1 changes from its own top-1 on the original photo, and, when it has the
  target class, whether that is now its top-1.
- One budget gives per-image results and a success rate; several also give the curve (success
  rate and original-top-1-kept rate against eps) as a table and `curve.png`.
- Everything goes to a fresh `attack-<time>` folder with `result.json` (`outputs.write_sidecar`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data.images import decode_image, is_candidate_image
from pipeline.errors import DatasetError, UsageError
from pipeline.explain.attack import Budget, PGDSettings, default_step, goal_reached, pgd_attack, probabilities_of
from pipeline.explain.attack_plots import curve_image, difference_gain, side_by_side
from pipeline.explain.outputs import new_result_dir, save_png, write_sidecar
from pipeline.predict.images import decoded_batches, in_given_order

#: Images attacked together (one forward + backward pass per step for the whole batch).
DEFAULT_ATTACK_BATCH = 8
#: Labels kept per image before and after.
TOP_K = 3
#: Side-by-side pictures listed in the sidecar for `report --html` (all of them are in the folder).
REPORT_PICTURES = 12
#: The sidecar's command kind and the folder prefix.
COMMAND = "attack"
#: The value of --target that asks for an untargeted attack.
UNTARGETED = "none"
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class AttackPlan:
    """Every setting of one `attack` run. `step` None means the default for each budget."""

    target: str | None
    budgets: tuple[Budget, ...]
    steps: int
    step: Budget | None = None
    early_stop: bool = True
    random_start: bool = False
    seed: int = 0
    batch_size: int = DEFAULT_ATTACK_BATCH

    def settings_for(self, budget: Budget) -> PGDSettings:
        """The PGD settings for one budget."""
        step = self.step.levels if self.step is not None else default_step(budget.levels, self.steps)
        return PGDSettings(eps=budget.levels, step=step, steps=self.steps, early_stop=self.early_stop,
                           random_start=self.random_start, seed=self.seed)

    def to_dict(self) -> dict:
        """The settings as recorded in the sidecar (levels are of the 0..255 pixel range)."""
        return {"target": self.target or UNTARGETED, "targeted": self.target is not None,
                "eps": [{"given": b.text, "levels": b.levels, "fraction": b.fraction} for b in self.budgets],
                "steps": self.steps,
                "step": ({"given": self.step.text, "levels": self.step.levels} if self.step is not None
                         else {"given": "default", "levels": [default_step(b.levels, self.steps) for b in self.budgets],
                               "rule": "2.5 * eps / steps"}),
                "early_stop": self.early_stop, "random_start": self.random_start, "seed": self.seed,
                "batch_size": self.batch_size, "norm": "linf", "pixel_space": "[0, 255], rounded to uint8 in budget"}


def collect_images(inputs: Sequence[Path]) -> list[Path]:
    """Files as given, and every candidate image under each folder (recursively, sorted); `DatasetError` if none."""
    found = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            found.extend(sorted(p for p in item.rglob("*") if p.is_file() and is_candidate_image(p)))
        else:
            found.append(item)
    if not found:
        raise DatasetError(f"no images found in {', '.join(str(p) for p in inputs)}; pass image files or folders "
                           "holding JPEG, PNG, GIF, BMP, WebP or TIFF files")
    return found


def result_names(paths: Sequence[Path]) -> list[str]:
    """One distinct, file-name-safe NAME per image: the file stem, its parent folder added when stems repeat."""
    stems = [_UNSAFE_NAME.sub("_", p.stem) or "image" for p in paths]
    repeated = {s for s in stems if stems.count(s) > 1}
    names, used = [], set()
    for path, stem in zip(paths, stems):
        name = f"{_UNSAFE_NAME.sub('_', path.parent.name)}-{stem}" if stem in repeated else stem
        candidate, n = name, 2
        while candidate in used:
            candidate, n = f"{name}-{n}", n + 1
        used.add(candidate)
        names.append(candidate)
    return names


def run_attack(classifier, paths: Sequence[Path], plan: AttackPlan, output_dir: Path | None = None, check=None,
               progress: Callable[[int, int], None] | None = None) -> dict:
    """Attack every image under every budget (see the module doc); returns the result dict also in result.json."""
    target_index = resolve_class(classifier, plan.target) if plan.target is not None else None
    paths = collect_images(paths)
    errors: list[dict] = []
    decoded = [(list(batch_paths), pixels) for batch_paths, pixels in
               decoded_batches(paths, classifier.resize, errors, plan.batch_size)]
    good = [p for batch_paths, _ in decoded for p in batch_paths]
    if not good:
        in_given_order(errors, paths)  # raises, listing why nothing could be read
    names = dict(zip(map(str, good), result_names(good)))
    result_dir = new_result_dir(Path(output_dir) if output_dir is not None else classifier.output_dir, COMMAND)
    total = len(plan.budgets) * len(good) * plan.steps
    per_budget = []
    for index, budget in enumerate(plan.budgets):
        offset = index * len(good) * plan.steps
        started = time.perf_counter()
        rows = []
        done_batches = 0
        for batch_paths, pixels in decoded:
            def batch_progress(done, _total, base=offset + done_batches * plan.steps):
                if progress is not None:
                    progress(base + done, total)
            rows.extend(_attack_batch(classifier, batch_paths, pixels, target_index, plan, budget, names,
                                      result_dir, check, batch_progress))
            done_batches += len(batch_paths)
        seconds = time.perf_counter() - started
        per_budget.append({"budget": budget, "rows": rows, "seconds": seconds})
    return _finish(classifier, plan, per_budget, errors, result_dir, check)


def _attack_batch(classifier, paths, pixels, target_index, plan, budget, names, result_dir, check, progress):
    settings = plan.settings_for(budget)
    targets = None if target_index is None else np.full(len(paths), target_index, dtype=np.int64)
    outcome = pgd_attack(classifier.model, pixels, targets, settings, progress=progress)
    several = len(plan.budgets) > 1
    saved, files = [], []
    for path, original, adversarial in zip(paths, pixels, outcome.adversarial):
        name = names[str(path)]
        stem = f"{name}-eps{budget.label}" if several else name
        original_file = result_dir / f"{name}-original.png"
        if not original_file.exists():
            save_png(original_file, original)
        saved.append(save_png(result_dir / f"{stem}-adversarial.png", adversarial))
        files.append({"original": original_file.name, "adversarial": f"{stem}-adversarial.png",
                      "side_by_side": f"{stem}-side-by-side.png"})
    saved = np.stack(saved)
    after = probabilities_of(classifier.model, saved)  # success is judged on the file's pixels
    success = goal_reached(after, outcome.goal_classes, target_index is not None)
    check_rows = _check(check, paths, [result_dir / f["adversarial"] for f in files], saved, classifier,
                        plan.target) if check is not None else [None] * len(paths)
    rows = []
    for i, path in enumerate(paths):
        change = saved[i].astype(np.float64) - pixels[i].astype(np.float64)
        row = {"path": str(path), "name": names[str(path)], "eps": budget.levels,
               "original_top3": _top(outcome.probabilities_before[i], classifier.class_names),
               "final_top3": _top(after[i], classifier.class_names),
               "targeted": target_index is not None, "goal_class": classifier.class_names[int(outcome.goal_classes[i])],
               "goal_probability_before": float(outcome.probabilities_before[i, outcome.goal_classes[i]]),
               "goal_probability_after": float(after[i, outcome.goal_classes[i]]),
               "linf": float(np.abs(change).max()), "l2": float(np.sqrt((change ** 2).sum())),
               "steps_used": int(outcome.steps_used[i]), "success": bool(success[i]),
               "already_there": bool(goal_reached(outcome.probabilities_before[i:i + 1],
                                                  outcome.goal_classes[i:i + 1], target_index is not None)[0]),
               "files": files[i]}
        if check_rows[i] is not None:
            row["check"] = check_rows[i]
        _save_side_by_side(result_dir / files[i]["side_by_side"], pixels[i], saved[i], budget, row)
        rows.append(row)
    return rows


def _check(check, source_paths, adversarial_files, saved, classifier, target):
    """The second classifier's verdict on the original photos and the saved adversarial PNGs."""
    same_input = check.input_size == classifier.input_size and check.resize == classifier.resize
    originals = np.stack([decode_image(p, check.resize) for p in source_paths])
    adversarial = saved if same_input else np.stack([decode_image(f, check.resize) for f in adversarial_files])
    before, after = probabilities_of(check.model, originals), probabilities_of(check.model, adversarial)
    target_index = _maybe_index(check, target)
    rows = []
    for i in range(len(source_paths)):
        top_before, top_after = int(before[i].argmax()), int(after[i].argmax())
        rows.append({"original_top1": _top(before[i], check.class_names, 1)[0],
                     "adversarial_top1": _top(after[i], check.class_names, 1)[0],
                     "top1_changed": top_before != top_after,
                     "target_reached": None if target_index is None else top_after == target_index,
                     "resized": not same_input})
    return rows


def resolve_class(classifier, name: str) -> int:
    """`classifier.class_index(name)`, or else the one class with `name` among its comma-separated synonyms.

    ImageNet names read "tabby, tabby cat"; `--target tabby` or `--target "tabby cat"` finds it.
    The classifier's own `UsageError` (naming close matches) when neither finds exactly one class.
    """
    try:
        return classifier.class_index(name)
    except UsageError:
        wanted = name.strip().lower()
        found = [i for i, label in enumerate(classifier.class_names)
                 if wanted in (synonym.strip().lower() for synonym in label.split(","))]
        if len(found) == 1:
            return found[0]
        raise


def _maybe_index(classifier, name):
    if name is None:
        return None
    try:
        return resolve_class(classifier, name)
    except UsageError:
        return None


def _save_side_by_side(path: Path, original, adversarial, budget: Budget, row: dict) -> None:
    before, after = row["original_top3"][0], row["final_top3"][0]
    levels = budget.integer_levels
    captions = (f"original: {before['label']} {before['probability']:.2f}",
                f"adversarial: {after['label']} {after['probability']:.2f}" + (" \u2713" if row["success"] else ""),
                f"difference \u00d7{difference_gain(levels):.0f}  (L\u221e {row['linf']:.0f}/255, "
                f"eps {budget.label}/255)")
    goal = f"-> {row['goal_class']}" if row["targeted"] else f"off {row['goal_class']}"
    title = f"{Path(row['path']).name} {goal}: {'success' if row['success'] else 'failed'}"
    save_png(path, side_by_side(original, adversarial, levels, captions, title))


def _top(probabilities, names, k: int = TOP_K) -> list[dict]:
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [{"label": names[int(j)], "probability": float(probabilities[j])} for j in order]


def _finish(classifier, plan, per_budget, errors, result_dir, check) -> dict:
    summaries = [_summary(entry["budget"], entry["rows"], entry["seconds"], plan) for entry in per_budget]
    images = []
    if len(per_budget) > 1:
        curve = curve_image([s["eps"] for s in summaries], [s["success_rate"] for s in summaries],
                            [s["original_kept_rate"] for s in summaries],
                            f"attack {_goal_text(plan)} on {classifier.name}, {summaries[0]['images']} images",
                            "attack success rate")
        save_png(result_dir / "curve.png", curve)
        images.append("curve.png")
    last_rows = per_budget[-1]["rows"]
    images.extend(row["files"]["side_by_side"] for row in last_rows[:REPORT_PICTURES])
    result = {"result_dir": str(result_dir), "target": plan.target or UNTARGETED, "per_eps": summaries,
              "per_image": [row for entry in per_budget for row in entry["rows"]], "unreadable": errors}
    if check is not None:
        result["check"] = {"classifier": check.source, "name": check.name}
    title = f"attack {_goal_text(plan)} on {classifier.name}"
    summary = "; ".join(f"eps {s['eps']:g}/255: {s['successes']}/{s['images']} succeeded" +
                        (f", {s['check_fooled']}/{s['images']} also fool the check" if "check_fooled" in s else "")
                        for s in summaries)
    write_sidecar(result_dir, COMMAND, plan.to_dict(), classifier.source, result, images, title, summary)
    return result


def _goal_text(plan) -> str:
    return f"-> {plan.target}" if plan.target is not None else "untargeted"


def _summary(budget: Budget, rows: list[dict], seconds: float, plan: AttackPlan) -> dict:
    count = len(rows)
    summary = {"eps": budget.levels, "eps_given": budget.text, "images": count,
               "successes": sum(r["success"] for r in rows),
               "success_rate": sum(r["success"] for r in rows) / count,
               "original_kept_rate": sum(r["final_top3"][0]["label"] == r["original_top3"][0]["label"]
                                         for r in rows) / count,
               "already_there": sum(r["already_there"] for r in rows),
               "linf_max": max(r["linf"] for r in rows), "linf_mean": float(np.mean([r["linf"] for r in rows])),
               "l2_mean": float(np.mean([r["l2"] for r in rows])),
               "steps_mean": float(np.mean([r["steps_used"] for r in rows])), "seconds": seconds,
               "seconds_per_image": seconds / count}
    checked = [r["check"] for r in rows if "check" in r]
    if checked:
        summary["check_fooled"] = sum(c["top1_changed"] for c in checked)
        summary["check_fooled_rate"] = summary["check_fooled"] / count
        reached = [c["target_reached"] for c in checked if c["target_reached"] is not None]
        summary["check_target_reached"] = sum(reached) if reached else None
    return summary
