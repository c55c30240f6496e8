"""Which candidates to try, in which order, and how the winner is chosen.

Rungs, cheapest first, in the spirit of successive halving (Jamieson & Talwalkar, 2016; Li et
al., Hyperband, 2018): each rung keeps the best 1/`ETA` of the previous one on validation and
spends more per candidate on them.

0. every backbone at its native size, every head recipe (the cheapest extractions first);
1. the best 1/ETA backbones at each larger input size, with their best `HEADS_PROMOTED` head recipes;
4. (after rung 1) the best backbone's best extraction at its earlier feature layers, where the space
   offers any (`SearchSpace.layers`: VGG16's block4_pool), with its best `HEADS_PROMOTED` head recipes;
2. the best 1/ETA extractions so far with augmented training views (`extract --views`);
3. fusion: the best extraction of each of the two best backbones, with the best head recipe.

Fine-tuning is not a rung: it trains the backbone for minutes to hours, more than a search budget
on a CPU allows; `report` suggests it when the leaderboard does.

The winner (`choose_winner`) is chosen on validation only: the best validation top-1, then,
because a small validation split cannot tell close candidates apart, the simplest candidate
within one standard error of it (`standard_error`: binomial, of the best top-1 on the validation images),
as `logreg` already chooses its C; simplest is `complexity`: no fusion before fusion, then the
cheaper forward pass (multiply-adds x pixels), fewer views, the default feature layer, no test-time
augmentation (one forward pass per image instead of one per view), the simpler head, the plainer pooling.
"""

from __future__ import annotations

import math
from dataclasses import replace

from pipeline.search.cost import GFLOPS_AT_NATIVE, UNKNOWN_GFLOPS
from pipeline.search.record import DONE
from pipeline.search.space import SEARCH_POOLINGS, SIMPLEST_HEAD_ORDER, TTA, Extraction, Recipe, SearchSpace

#: Each rung keeps the best 1/ETA of the previous one (at least one).
ETA = 2
#: Head recipes (kind, pooling) carried from a backbone's best extraction to its more expensive ones.
HEADS_PROMOTED = 2
#: Members of the fusion rung: the best extraction of this many backbones.
FUSION_MEMBERS = 2
FUSION = "fusion"
RUNG_NATIVE, RUNG_LARGER, RUNG_VIEWS, RUNG_FUSION, RUNG_LAYER = 0, 1, 2, 3, 4


def best_first(scores: dict, keep: int | None = None) -> list:
    """The keys of `scores` (key -> valid top-1) best first; the first `keep`.

    Ties go to the simpler key (`simplicity`), never to the order results came in, so a resumed or
    repeated search takes the same path as the first.
    """
    ranked = sorted(scores, key=lambda key: (-scores[key], simplicity(key)))
    return ranked if keep is None else ranked[:keep]


def simplicity(key) -> tuple:
    """A backbone name, an `Extraction` or a `Recipe` as a sortable tuple, simplest first (see `complexity`)."""
    if isinstance(key, str):
        return (_forward_cost({"backbone": key, "input_size": _native(key)}), key)
    if isinstance(key, Extraction):
        return (_forward_cost(key.to_dict()), key.views, key.layer or "", key.backbone)
    return complexity({"recipe": key.to_dict()}) + (key.extraction.backbone,)


def kept(count: int) -> int:
    """How many of `count` candidates a rung promotes."""
    return max(1, math.ceil(count / ETA))


def native_rung(space: SearchSpace) -> list[Extraction]:
    return [space.native(backbone) for backbone in space.backbones]


def larger_rung(space: SearchSpace, backbone_scores: dict) -> list[Extraction]:
    """Larger input sizes of the best backbones (`backbone_scores`: backbone -> best valid top-1)."""
    return [e for backbone in best_first(backbone_scores, kept(len(backbone_scores))) for e in space.larger(backbone)]


def views_rung(space: SearchSpace, extraction_scores: dict) -> list[Extraction]:
    """The best extractions without views (`extraction_scores`: Extraction -> best valid top-1), with views."""
    plain = {e: score for e, score in extraction_scores.items() if not e.views}
    if not space.views:
        return []
    return [replace(e, views=space.views) for e in best_first(plain, kept(len(plain)))]


def layer_rung(space: SearchSpace, extraction_scores: dict) -> list[Extraction]:
    """The best backbone's best extraction (`extraction_scores`: Extraction -> best valid top-1) at each earlier
    feature layer `space.layers` offers it; [] when it offers none."""
    plain = {e: score for e, score in extraction_scores.items() if not e.views and not e.layer}
    if not plain:
        return []
    best = best_first(plain, 1)[0]
    return [replace(best, layer=layer) for layer in space.layers.get(best.backbone, ())]


def promoted_heads(recipe_scores: dict, backbone: str) -> list[tuple[str, str]]:
    """The best `HEADS_PROMOTED` (kind, pooling) of `backbone` so far (`recipe_scores`: Recipe -> valid top-1)."""
    mine = {r: s for r, s in recipe_scores.items() if r.extraction.backbone == backbone}
    heads = []
    for recipe in best_first(mine):
        if (recipe.head, recipe.pooling) not in heads:
            heads.append((recipe.head, recipe.pooling))
    return heads[:HEADS_PROMOTED]


def fusion_members(recipe_scores: dict) -> list[Recipe]:
    """The best recipe of each of the `FUSION_MEMBERS` best backbones, on caches without views (fusion
    joins one row per image), all with the best recipe's head and pooling; [] with fewer backbones."""
    plain = {r: s for r, s in recipe_scores.items() if not r.extraction.views}
    members, seen = [], set()
    for recipe in best_first(plain):
        if recipe.extraction.backbone not in seen:
            seen.add(recipe.extraction.backbone)
            members.append(recipe)
    if len(members) < FUSION_MEMBERS:
        return []
    lead = members[0]
    chosen = [lead]
    for recipe in members[1:FUSION_MEMBERS]:
        same_head = Recipe(recipe.extraction, lead.head, lead.pooling)
        chosen.append(same_head)
    return chosen


def fusion_name(members: list[Recipe]) -> str:
    return f"{FUSION} {' + '.join(m.extraction.name for m in members)} {members[0].head}" + (
        f" {members[0].pooling}" if members[0].pooling != "avg" else "")


def complexity(entry: dict) -> tuple:
    """How complex a recorded candidate is, simplest first (see the module doc)."""
    recipe = entry["recipe"]
    members = entry.get("members") or [recipe]
    forward = sum(_forward_cost(m) for m in members)
    head_rank = SIMPLEST_HEAD_ORDER.index(recipe["head"]) if recipe["head"] in SIMPLEST_HEAD_ORDER else len(
        SIMPLEST_HEAD_ORDER)
    pooling_rank = (SEARCH_POOLINGS.index(recipe["pooling"]) if recipe["pooling"] in SEARCH_POOLINGS
                    else len(SEARCH_POOLINGS))
    return (len(members) > 1, forward, recipe.get("views", 0), bool(recipe.get("layer")), bool(recipe.get(TTA)),
            head_rank, pooling_rank)


def _native(backbone: str) -> int:
    from pipeline.backbones.registry import BACKBONES

    return BACKBONES[backbone].default_input_size


def _forward_cost(recipe: dict) -> float:
    scale = (recipe["input_size"] / _native(recipe["backbone"])) ** 2
    return GFLOPS_AT_NATIVE.get(recipe["backbone"], UNKNOWN_GFLOPS) * scale


def standard_error(top1: float, n: int) -> float:
    """The standard error of an accuracy `top1` measured on `n` images.

    Binomial, with the accuracy shrunk as (k + 1) / (n + 2) (Laplace / Agresti-Coull style), so a
    perfect score on 12 images is not taken as certain: its standard error is 0.074, not 0.
    """
    if not n:
        return 0.0
    shrunk = (top1 * n + 1) / (n + 2)
    return math.sqrt(shrunk * (1.0 - shrunk) / n)


def choose_winner(candidates: dict, valid_images: int) -> tuple[str, dict]:
    """(name, selection) of the winner among the done `candidates` (name -> record entry); see the module doc.

    `selection` says the best validation top-1, the standard error, the candidates within it and
    why the winner was taken. Test is never read here (candidate entries hold no test figures).
    """
    done = {name: entry for name, entry in candidates.items() if entry.get("status") == DONE}
    best_name = max(done, key=lambda name: (done[name]["valid"]["top1"], -done[name].get("order", 0)))
    best = done[best_name]["valid"]["top1"]
    error = standard_error(best, valid_images)
    within = [name for name, entry in done.items() if entry["valid"]["top1"] >= best - error - 1e-12]
    winner = min(within, key=lambda name: (complexity(done[name]), -done[name]["valid"]["top1"],
                                           done[name].get("order", 0)))
    return winner, {
        "rule": "best valid top-1, then the simplest candidate within one standard error of it",
        "best_valid_top1": best, "best_candidate": best_name, "standard_error": round(error, 4),
        "valid_images": valid_images, "within_one_standard_error": len(within),
        "simpler_than_best": winner != best_name,
    }
