"""`search` end to end: candidates extracted and fitted within a budget, the winner chosen on validation.

`run_search` indexes the dataset once, builds the space (`pipeline.search.space`), refuses a
budget too small for the cheapest candidate, then walks the rungs of `pipeline.search.scheduler`,
cheapest first. Before each step it estimates its seconds (`pipeline.search.cost`; an earlier
feature layer at the backbone's full forward pass, an upper bound that is never learnt from) and skips it
when that would leave too little for the final fit (a backbone not measured yet is first timed on
a few blank images, where that probe fits, so it is not skipped on a borrowed rate); after each
step it saves the record (`pipeline.search.record`), so an interrupted search resumes there.

The budget is the search's total over every run of it on this dataset and cache folder (the
record keeps the seconds spent): an interrupted search resumes with the time it had left, an
identical re-run finds nothing left to try and only reads the record, and a larger budget goes on
where the last one stopped.

Every extraction is a normal `extract` run (same cache keys, crash-safe segments, reuse of rows
already computed here or in sibling caches); a cache that already holds every row is not even
opened for writing. Candidates are fitted on features without the test split, so no choice can
see test; the winner is fitted again on the full cache, scored once on test, and saved as a
normal head (or fused head) that `predict`, `export`, `visualize` and `attack` take.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from pipeline.data.indexing import dataset_name_of, index_dataset
from pipeline.errors import HeadError, PipelineError, UsageError
from pipeline.extract.run import run_extract
from pipeline.extract.setup import resolve_setup
from pipeline.heads.features import load_feature_set
from pipeline.heads.fitting import fit_on_features
from pipeline.heads.metrics import classification_metrics
from pipeline.search import record as records
from pipeline.search import scheduler
from pipeline.search.cost import CostModel, format_duration
from pipeline.search.final import TEST, VALID, fit_winner, kept
from pipeline.search.plan import ExtractionPlan, known_stamps, plan_extraction
from pipeline.search.space import Extraction, Recipe, SearchSpace, build_space, head_recipes

log = logging.getLogger(__name__)

#: Seconds kept back for the winner's final fit and save, on top of its estimated fit time.
FINAL_RESERVE_SECONDS = 5.0
#: A step starts only when this many times its estimate fits in the time left (throughput varies on a shared machine).
ESTIMATE_MARGIN = 1.5
#: Images of the timed forward pass that measures an unmeasured backbone before it is skipped as too slow.
PROBE_IMAGES = 4


@dataclass(frozen=True)
class SearchEvent:
    """One progress line: what the search does now, the best on validation so far, seconds left."""

    action: str  # probe, extract, fit, reuse, skip, fuse, final
    what: str
    estimate: float | None
    best: str | None
    best_valid: float | None
    seconds_left: float


@dataclass(frozen=True)
class SearchResult:
    """What a search found (see `SearchResult.to_dict` for `--json`)."""

    record_path: str
    winner: str
    recipe: dict
    valid: dict
    test: dict | None
    head: str
    selection: dict
    seconds: float  # this run
    spent_seconds: float  # every run of this search together, what the budget limits
    budget_seconds: float
    candidates: int
    fitted: int
    reused: int
    skipped: int
    extracted_rows: int
    leaderboard: list = field(default_factory=list)
    caveats: list = field(default_factory=list)  # splits whose figures mean less than they seem

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class _Run:
    data_dir: Path
    cache_dir: Path
    budget: float
    space: SearchSpace
    progress: Callable[[SearchEvent], None] | None
    clock: Callable[[], float]
    started: float
    path: Path
    record: dict
    cost: CostModel
    index: object
    train_rows: int
    spent_before: float = 0.0  # seconds earlier runs of this search spent (the budget is for all runs)
    plans: dict = field(default_factory=dict)  # Extraction -> ExtractionPlan
    features: dict = field(default_factory=dict)  # (cache path, pooling) -> FeatureSet without test
    counts: dict = field(default_factory=lambda: {"fitted": 0, "reused": 0, "skipped": 0, "extracted_rows": 0})
    order: int = 0

    def elapsed(self) -> float:
        return self.clock() - self.started

    def left(self) -> float:
        return self.budget - self.spent_before - self.elapsed()

    def save(self) -> None:
        self.record["cost_model"] = self.cost.to_dict()
        self.record["spent_seconds"] = round(self.spent_before + self.elapsed(), 3)
        records.save_record(self.path, self.record)

    def tell(self, action: str, what: str, estimate: float | None = None) -> None:
        best = _best(self.record)
        event = SearchEvent(action, what, estimate, best[0] if best else None, best[1] if best else None,
                            max(self.left(), 0.0))
        log.info("%s %s (best %s, %.0f s left)", action, what, best, event.seconds_left)
        if self.progress is not None:
            self.progress(event)


def run_search(data_dir: Path, cache_dir: Path, budget_seconds: float, backbones: tuple[str, ...] | None = None,
               heads: tuple[str, ...] | None = None, space: SearchSpace | None = None,
               progress: Callable[[SearchEvent], None] | None = None,
               clock: Callable[[], float] = time.perf_counter) -> SearchResult:
    """Search recipes for the dataset at `data_dir` within `budget_seconds` (see the module doc).

    `backbones` / `heads` filter the default space (`UsageError` names the valid ones); `space`
    replaces it whole. `progress(SearchEvent)` is called before every step. Raises `UsageError`
    when the budget cannot pay for the cheapest candidate, `PipelineError` for the data's problems.
    """
    started = clock()
    data_dir, cache_dir = Path(data_dir), Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    space = space or build_space(cache_dir, backbones, heads)
    name = dataset_name_of(data_dir)
    path = records.record_path(cache_dir, name)
    index = index_dataset(data_dir, known_stamps=known_stamps(records.load_record(path)))
    signature = records.dataset_signature(index)
    record = records.load_record(path, signature) or records.new_record(name, str(data_dir.resolve()), signature)
    valid_images = sum(r.split == VALID for r in index.records)
    if not valid_images:
        raise PipelineError(f"{data_dir} has no validation images, and search chooses everything on validation; "
                            "give it a valid/ folder, or let extract carve one (the default)")
    record.update({"space": space.to_dict(), "budget_seconds": budget_seconds, "valid_images": valid_images,
                   "test_images": sum(r.split == TEST for r in index.records)})
    run = _Run(data_dir, cache_dir, budget_seconds, space, progress, clock, started, path, record,
               CostModel.from_dict(record.get("cost_model")), index, sum(r.split == "train" for r in index.records),
               spent_before=record.get("spent_seconds", 0.0))
    _refuse_small_budget(run)
    recipe_scores = _native_rung(run)
    _larger_rung(run, recipe_scores)
    _layer_rung(run, recipe_scores)
    _views_rung(run, recipe_scores)
    if space.fusion:
        _fusion_rung(run, recipe_scores)
    return _finish(run, valid_images)


def _plan(run: _Run, extraction: Extraction) -> ExtractionPlan:
    """`plan_extraction`, once per extraction and run."""
    if extraction not in run.plans:
        run.plans[extraction] = plan_extraction(extraction, run.data_dir, run.cache_dir, run.index)
    return run.plans[extraction]


def _refuse_small_budget(run: _Run) -> None:
    """`UsageError` naming the cheapest candidate's cost when the budget left cannot pay for it."""
    costs = []
    for extraction in scheduler.native_rung(run.space):
        simplest = head_recipes(run.space, extraction)[0]
        costs.append((_extraction_estimate(run, extraction) + _fit_estimate(run, simplest), simplest))
    seconds, cheapest = min(costs, key=lambda item: item[0])
    if seconds and seconds + FINAL_RESERVE_SECONDS > run.budget - run.spent_before:  # one-time set-up not counted
        earlier = (f"; earlier runs of this search already spent {format_duration(run.spent_before)} of it"
                   if run.spent_before else "")
        raise UsageError(f"--budget {format_duration(run.budget)} is too small{earlier}: the cheapest candidate "
                         f"({cheapest.name}) is estimated at {format_duration(seconds)} on this machine, plus "
                         f"{format_duration(FINAL_RESERVE_SECONDS)} to save the winner; pass --budget "
                         f"{format_duration(run.spent_before + seconds + FINAL_RESERVE_SECONDS)} or more")


def _extraction_estimate(run: _Run, extraction: Extraction) -> float:
    plan = _plan(run, extraction)
    return 0.0 if plan.complete else run.cost.extraction_seconds(extraction, max(plan.missing, 1))


def _fit_estimate(run: _Run, recipe: Recipe) -> float:
    entry = run.record["candidates"].get(recipe.name)
    if entry and entry.get("status") in (records.DONE, records.FAILED) and \
            entry.get("feature_key") == _plan(run, recipe.extraction).feature_key:
        return 0.0
    return run.cost.head_seconds(recipe.head, recipe.pooling, run.train_rows * (recipe.extraction.views + 1))


def _reserve(run: _Run) -> float:
    """Seconds kept for the final fit: the best candidate's fit (the simplest head before any), plus saving."""
    best = _best(run.record)
    recipe = run.record["candidates"][best[0]]["recipe"] if best else {"head": run.space.heads[0], "pooling": "avg"}
    rows = run.train_rows * (1 + (recipe.get("views") or 0))
    return FINAL_RESERVE_SECONDS + run.cost.head_seconds(recipe["head"], recipe["pooling"], rows)


def _affordable(run: _Run, seconds: float) -> bool:
    return seconds <= 0 or seconds * ESTIMATE_MARGIN + _reserve(run) <= run.left()


def _needs(run: _Run) -> str:
    return f"(x{ESTIMATE_MARGIN} margin, and {_reserve(run):.0f} s kept for the final fit)"


def _native_rung(run: _Run) -> dict:
    """Rung 0; returns Recipe -> valid top-1 of every recipe done so far (all rungs add to it)."""
    scores: dict = {}
    extractions = sorted(scheduler.native_rung(run.space), key=lambda e: _extraction_estimate(run, e))
    for extraction in extractions:
        _try_extraction(run, extraction, head_recipes(run.space, extraction), scheduler.RUNG_NATIVE, scores)
    return scores


def _larger_rung(run: _Run, scores: dict) -> None:
    """Larger input sizes of the backbones, best first, each with its best heads."""
    by_backbone = _best_by(scores, lambda recipe: recipe.extraction.backbone)
    extractions = sorted(scheduler.larger_rung(run.space, by_backbone), key=lambda e: _extraction_estimate(run, e))
    _try_promoted(run, extractions, scheduler.RUNG_LARGER, scores)


def _layer_rung(run: _Run, scores: dict) -> None:
    """The best backbone's best extraction at its earlier feature layers (`SearchSpace.layers`), its best heads."""
    by_extraction = _best_by(scores, lambda recipe: recipe.extraction)
    _try_promoted(run, scheduler.layer_rung(run.space, by_extraction), scheduler.RUNG_LAYER, scores)


def _views_rung(run: _Run, scores: dict) -> None:
    """The best extractions again with augmented views, their best heads."""
    by_extraction = _best_by(scores, lambda recipe: recipe.extraction)
    _try_promoted(run, scheduler.views_rung(run.space, by_extraction), scheduler.RUNG_VIEWS, scores)


def _best_by(scores: dict, group) -> dict:
    """The best valid top-1 of the recipes in `scores` per `group(recipe)`."""
    best: dict = {}
    for recipe, score in scores.items():
        best[group(recipe)] = max(score, best.get(group(recipe), 0.0))
    return best


def _try_promoted(run: _Run, extractions, rung: int, scores: dict) -> None:
    """Each of `extractions` with the heads promoted from the rungs before (`scheduler.promoted_heads`)."""
    for extraction in extractions:
        recipes = [Recipe(extraction, kind, pooling)
                   for kind, pooling in scheduler.promoted_heads(scores, extraction.backbone)]
        _try_extraction(run, extraction, recipes, rung, scores)


def _try_extraction(run: _Run, extraction: Extraction, recipes: list[Recipe], rung: int, scores: dict) -> None:
    """Extract (when rows are missing and the budget allows), then fit each recipe on it."""
    if not recipes:
        return
    estimate = _extraction_estimate(run, extraction)
    if not _affordable(run, estimate) and _worth_probing(run, extraction):
        _probe(run, extraction)
        estimate = _extraction_estimate(run, extraction)
    if not _affordable(run, estimate):
        for recipe in recipes:
            _skip(run, recipe, rung, f"extracting {extraction.name} was estimated at {estimate:.0f} s "
                                     f"{_needs(run)}, {max(run.left(), 0):.0f} s were left")
        return
    plan = _plan(run, extraction)
    if not plan.complete:
        run.tell("extract", extraction.name, estimate)
        summary = run_extract(run.data_dir, run.cache_dir, plan.options)
        if extraction.layer is None:  # an earlier layer's partial forward pass would understate the backbone's
            run.cost.observe_extraction(extraction, summary.extracted, summary.seconds, summary.startup_seconds)
        run.counts["extracted_rows"] += summary.extracted
        plan = replace(plan, cache_path=Path(summary.cache_path), missing=0, complete=True)
        run.plans[extraction] = plan
    run.record["extractions"][extraction.name] = {
        **extraction.to_dict(), "cache_path": str(plan.cache_path.resolve()), "feature_key": plan.feature_key}
    run.save()
    for recipe in recipes:
        _try_recipe(run, recipe, plan, rung, scores)


def _worth_probing(run: _Run, extraction: Extraction) -> bool:
    """Whether a timed probe could change the decision: the backbone is unmeasured and its probe affordable."""
    probe = run.cost.startup_seconds + PROBE_IMAGES * run.cost.forward_seconds_per_row(extraction)
    return (extraction.layer is None and extraction.backbone not in run.cost.native_seconds_per_image
            and _affordable(run, probe))


def _probe(run: _Run, extraction: Extraction) -> None:
    """Time the backbone on `PROBE_IMAGES` blank images, so its estimate is measured, not borrowed from others."""
    import numpy as np

    from pipeline.extract.setup import build_extractor

    run.tell("probe", extraction.name)
    setup, built = resolve_setup(_plan(run, extraction).options, run.cache_dir)
    spec = setup.feature_spec
    extractor = built or build_extractor(setup.backbone, spec.layer, spec.input_size, setup.weights, spec.precision,
                                         spec.pooling)
    pixels = np.zeros((PROBE_IMAGES, spec.input_size, spec.input_size, 3), dtype=np.uint8)
    extractor(pixels[:1])  # the first call traces the graph
    started = time.perf_counter()
    extractor(pixels)
    run.cost.observe_probe(extraction, (time.perf_counter() - started) / PROBE_IMAGES, extractor.build_seconds)
    run.save()


def _try_recipe(run: _Run, recipe: Recipe, plan: ExtractionPlan, rung: int, scores: dict) -> None:
    """Fit `recipe` on its cache without test and record its validation score; on an extraction with views
    (and `space.tta`), also its score with test-time augmentation, as the candidate `recipe.with_tta()`."""
    names = [recipe.name] + ([recipe.with_tta().name] if _scores_tta(run, recipe) else [])
    entries = [run.record["candidates"].get(name) for name in names]
    if all(entry and entry.get("status") in (records.DONE, records.FAILED)
           and entry.get("feature_key") == plan.feature_key for entry in entries):
        for name, entry in zip(names, entries):
            run.counts["reused"] += 1
            run.tell("reuse", name)
            if entry["status"] == records.DONE:
                scores[recipe.with_tta() if name != recipe.name else recipe] = entry["valid"]["top1"]
        return
    estimate = _fit_estimate(run, recipe)
    if not _affordable(run, estimate):
        _skip(run, recipe, rung, f"fitting was estimated at {estimate:.0f} s {_needs(run)}, "
                                 f"{max(run.left(), 0):.0f} s were left")
        return
    run.tell("fit", recipe.name, estimate)
    features = _features_without_test(run, plan.cache_path, recipe.pooling)
    started = time.perf_counter()
    entry = {"recipe": recipe.to_dict(), "rung": rung, "cache": str(plan.cache_path.resolve()),
             "feature_key": plan.feature_key, "order": _next_order(run)}
    try:
        fitted = fit_on_features(features, recipe.head)
    except HeadError as error:
        entry.update(status=records.FAILED, note=str(error).splitlines()[0])
    else:
        seconds = time.perf_counter() - started
        run.cost.observe_head(recipe.head, recipe.pooling, len(features.splits["train"]), seconds)
        entry.update(status=records.DONE, valid=kept(fitted.metrics[VALID]),
                     train_top1=fitted.metrics["train"]["top1"], params=fitted.head.params_,
                     seconds=round(seconds, 3))
        scores[recipe] = entry["valid"]["top1"]
        run.counts["fitted"] += 1
        if len(names) > 1:
            _score_tta(run, recipe.with_tta(), entry, fitted, features, scores)
    run.record["candidates"][recipe.name] = entry
    run.save()


def _scores_tta(run: _Run, recipe: Recipe) -> bool:
    """Whether `recipe` is also scored with test-time augmentation: its extraction has views, the space asks."""
    return run.space.tta and bool(recipe.extraction.views) and not recipe.tta


def _score_tta(run: _Run, recipe: Recipe, plain: dict, fitted, features, scores: dict) -> None:
    """Record `recipe` (a TTA recipe): the head fitted for the plain one, scored on validation over the
    cached views of `DEFAULT_VIEW_SET` (test was removed from `features`, so it cannot be read here)."""
    from pipeline.heads.tta import DEFAULT_VIEW_SET, tta_scores

    started = time.perf_counter()
    entry = {**plain, "recipe": recipe.to_dict(), "order": _next_order(run), "tta_view_set": DEFAULT_VIEW_SET}
    try:
        tta = tta_scores(fitted.head, features, DEFAULT_VIEW_SET, splits=(VALID,))
    except HeadError as error:
        entry.update(status=records.FAILED, note=str(error).splitlines()[0])
        entry.pop("valid", None)
    else:
        entry.update(valid=kept(tta.metrics[VALID]), tta_views_per_image=tta.views_per_image,
                     seconds=round(plain["seconds"] + time.perf_counter() - started, 3))
        scores[recipe] = entry["valid"]["top1"]
    run.record["candidates"][recipe.name] = entry


def _features_without_test(run: _Run, cache_path: Path, pooling: str):
    """The cache's features with the test split removed: candidates cannot see test (module doc)."""
    key = (str(cache_path), pooling)
    if key not in run.features:
        features = load_feature_set(cache_path, None, None, pooling)
        run.features[key] = replace(features, splits={s: d for s, d in features.splits.items() if s != TEST})
    return run.features[key]


def _skip(run: _Run, recipe: Recipe, rung: int, why: str) -> None:
    entry = run.record["candidates"].get(recipe.name)
    if entry and entry.get("status") in (records.DONE, records.FAILED):
        return
    run.counts["skipped"] += 1
    run.tell("skip", f"{recipe.name}: {why}")
    run.record["candidates"][recipe.name] = {"recipe": recipe.to_dict(), "rung": rung, "status": records.SKIPPED,
                                             "note": f"not tried within the budget: {why}", "order": _next_order(run)}
    run.save()


def _fusion_rung(run: _Run, scores: dict) -> None:
    """Late fusion of the best members, weights chosen on validation (test stays unseen)."""
    from pipeline.heads.fusion import aligned_feature_sets, late_weight_grid
    from pipeline.heads.metrics import top_k_accuracy

    members = scheduler.fusion_members(scores)
    if not members:
        return
    name = scheduler.fusion_name(members)
    plans = [_plan(run, m.extraction) for m in members]
    keys = "+".join(plan.feature_key for plan in plans)
    entry = run.record["candidates"].get(name)
    if entry and entry.get("status") == records.DONE and entry.get("feature_key") == keys:
        run.counts["reused"] += 1
        run.tell("reuse", name)
        return
    rows = run.train_rows  # fusion members are caches without views
    estimate = sum(run.cost.head_seconds(m.head, m.pooling, rows) for m in members)  # members are fitted again
    if not all(plan.complete for plan in plans) or not _affordable(run, estimate):
        return
    run.tell("fuse", name, estimate)
    started = time.perf_counter()
    sets = aligned_feature_sets([plan.cache_path for plan in plans], None, members[0].pooling)
    sets = [replace(s, splits={k: d for k, d in s.splits.items() if k != TEST}) for s in sets]
    fitted = [fit_on_features(features, members[0].head) for features in sets]
    y_valid = sets[0].splits[VALID].y
    best = max(late_weight_grid(len(fitted)), key=lambda weights: (
        top_k_accuracy(y_valid, sum(w * f.probabilities[VALID] for w, f in zip(weights, fitted)), 1), -max(weights)))
    probabilities = sum(w * f.probabilities[VALID] for w, f in zip(best, fitted))
    metrics = classification_metrics(y_valid, probabilities, sets[0].class_names)
    run.record["candidates"][name] = {
        "recipe": {**members[0].to_dict(), "fusion": True}, "members": [m.to_dict() for m in members],
        "rung": scheduler.RUNG_FUSION, "status": records.DONE, "valid": kept(metrics), "feature_key": keys,
        "caches": [str(plan.cache_path.resolve()) for plan in plans], "params": {"late_weights": list(best)},
        "seconds": round(time.perf_counter() - started, 3), "order": _next_order(run)}
    run.counts["fitted"] += 1
    run.save()


def _finish(run: _Run, valid_images: int) -> SearchResult:
    candidates = run.record["candidates"]
    if not any(entry.get("status") == records.DONE for entry in candidates.values()):
        raise PipelineError(f"no candidate finished within --budget {format_duration(run.budget)}; raise the budget "
                            f"(the search record {run.path} says what was estimated)")
    name, selection = scheduler.choose_winner(candidates, valid_images)
    entry = candidates[name]
    winner = run.record.get("winner") or {}
    if not (winner.get("name") == name and winner.get("feature_key") == entry["feature_key"]
            and Path(winner.get("head", "")).is_file()):
        run.tell("final", f"{name}: fitting on the whole cache and scoring test once")
        winner = fit_winner(name, entry)
    winner["selection"] = selection
    run.record["winner"] = winner
    finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
    seconds = round(run.elapsed(), 3)
    run.record["runs"].append({"finished": finished, "seconds": seconds, "budget_seconds": run.budget, **run.counts})
    run.save()
    return SearchResult(
        record_path=str(run.path), winner=name, recipe=entry["recipe"], valid=winner["valid"], test=winner.get("test"),
        head=winner["head"], selection=selection, seconds=seconds, spent_seconds=run.record["spent_seconds"],
        budget_seconds=run.budget,
        candidates=len(candidates), fitted=run.counts["fitted"], reused=run.counts["reused"],
        skipped=run.counts["skipped"], extracted_rows=run.counts["extracted_rows"],
        leaderboard=records.leaderboard_rows(run.record), caveats=winner.get("caveats", []))


def _best(record: dict) -> tuple[str, float] | None:
    done = [(name, e["valid"]["top1"]) for name, e in record.get("candidates", {}).items()
            if e.get("status") == records.DONE]
    return max(done, key=lambda item: item[1]) if done else None


def _next_order(run: _Run) -> int:
    run.order = max([run.order] + [e.get("order", 0) for e in run.record["candidates"].values()]) + 1
    return run.order
