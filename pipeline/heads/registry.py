"""Every head the tool can fit, as data: its name, one line of help, where its code lives, its recipes.

The CLI builds `--head` from `HEADS` at start-up without importing any head's code (heads load
TensorFlow or scikit-learn); `head_class(kind)` imports the class when it is needed. Adding a head
is adding an entry here and a module under `pipeline.heads.kinds` that follows the interface in
`pipeline.heads.kinds.base`; `tests/test_head_contract.py` then holds it to that interface.

`SAVED_KINDS` adds the models that are saved, reported, predicted with and exported like heads but
are not fitted by `fit-head` on a cache's features: `fine-tuned` (`fine-tune`, see
`pipeline.finetune`), the top layers of the backbone trained together with a head; and the two
kinds of head record with no model of their own to load (`HeadEntry.no_model` says why):
`fusion` (`pipeline.heads.fusion`, applied through its members) and `external` (an outside
model's results, `pipeline.api.record`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from pipeline.errors import UsageError


@dataclass(frozen=True)
class HeadEntry:
    """One registered head.

    `recipes` are the named training recipes `--recipe` may pick (the first is the default);
    `options` the keyword arguments the head's constructor accepts besides a recipe;
    `differentiable` says whether images -> backbone -> head is one differentiable graph (needed
    to visualise classes or attack the head). `no_model` (kinds without a model of their own, and
    then without a module or class) is why such a head cannot be loaded as one model: a message
    with the fields `{path}`, `{members}` and `{external_name}` of the record.
    """

    kind: str
    help: str
    module: str | None
    class_name: str | None
    recipes: tuple[str, ...] = ()
    differentiable: bool = True
    options: tuple[str, ...] = ()
    no_model: str | None = None

    @property
    def has_model(self) -> bool:
        """Whether a head of this kind has a model file of its own (`head_class().load` reads it)."""
        return self.no_model is None

    def head_class(self):
        """The head's class (imports its module)."""
        return getattr(importlib.import_module(self.module), self.class_name)


HEADS: dict[str, HeadEntry] = {
    entry.kind: entry
    for entry in (
        HeadEntry("gap-dense", "GlobalAveragePooling2D + Dense(softmax) in Keras (--recipe default|classic)",
                  "pipeline.heads.kinds.gap_dense", "GapDenseHead", recipes=("default", "classic")),
        HeadEntry("logreg", "multinomial logistic regression, C chosen on validation",
                  "pipeline.heads.kinds.linear", "LogisticRegressionHead"),
        HeadEntry("svm", "one-vs-rest linear SVM (squared hinge), C chosen on validation",
                  "pipeline.heads.kinds.linear", "LinearSVMHead"),
        HeadEntry("mlp", "GAP + one ReLU hidden layer (512) + softmax, early stopping on validation",
                  "pipeline.heads.kinds.gap_dense", "MLPHead"),
        HeadEntry("knn", "cosine k-nearest neighbours, k chosen on validation",
                  "pipeline.heads.kinds.knn", "CosineKNNHead", differentiable=False),
        HeadEntry("multitask", "shared trunk, one softmax per target (--targets label,species), early stopping on "
                  "the summed validation loss", "pipeline.heads.kinds.multitask", "MultitaskHead",
                  options=("targets", "task_weights", "weighting", "hidden_units")),
    )
}
HEAD_NAMES = tuple(HEADS)
#: The kind of a model made by `fine-tune` (`pipeline.finetune`).
FINE_TUNED = "fine-tuned"
#: The kind of a fused head (`pipeline.heads.fusion`), which has no model of its own to load.
FUSION_KIND = "fusion"
#: The kind of an outside model's results recorded through `pipeline.api.record` (no model at all).
EXTERNAL_KIND = "external"
#: Every kind a saved head sidecar may name: the fitted heads, the models made by `fine-tune`, and the
#: records without a model of their own (fused heads, outside models' results).
SAVED_KINDS: dict[str, HeadEntry] = {
    **HEADS,
    FINE_TUNED: HeadEntry(FINE_TUNED, "top backbone layers trained with a head on a boundary cache (`fine-tune`)",
                          "pipeline.heads.kinds.fine_tuned", "FineTunedHead"),
    FUSION_KIND: HeadEntry(
        FUSION_KIND, "heads of several backbones fused (`fit-head` with several caches)", None, None,
        differentiable=False,
        no_model="head {path} fuses several backbones' heads, and this needs the head of one backbone; `predict` "
                 "takes fused heads, otherwise use one of its members: {members}"),
    EXTERNAL_KIND: HeadEntry(
        EXTERNAL_KIND, "the results of a model fitted outside this tool (`pipeline.api.record`)", None, None,
        differentiable=False,
        no_model="head {path} records the results of a model fitted outside this tool ({external_name}); there is "
                 "no model here to apply: use that model itself"),
}


def get_head_entry(kind: str) -> HeadEntry:
    """The registry entry of `kind`; `UsageError` lists the choices."""
    if kind not in HEADS:
        raise UsageError(f"unknown head {kind!r}; choose one of: {', '.join(HEADS)}")
    return HEADS[kind]


def saved_kind_entry(kind: str) -> HeadEntry:
    """The registry entry of any saved kind (a fitted head or a fine-tuned model); `UsageError` otherwise."""
    if kind not in SAVED_KINDS:
        raise UsageError(f"unknown head kind {kind!r}; known kinds: {', '.join(SAVED_KINDS)}")
    return SAVED_KINDS[kind]


def make_head(kind: str, recipe: str | None = None, **options):
    """A new, unfitted head of `kind`; `recipe` only for heads that have recipes, `options` only those the
    head accepts (`HeadEntry.options`)."""
    entry = get_head_entry(kind)
    given = {name: value for name, value in options.items() if value not in (None, {}, ())}
    unexpected = sorted(set(given) - set(entry.options))
    if unexpected:
        owners = ", ".join(e.kind for e in HEADS.values() if set(unexpected) <= set(e.options)) or "no head"
        raise UsageError(f"{', '.join(unexpected)} applies to {owners}, not {kind}")
    recipe = check_recipe(kind, recipe)
    if given:
        return entry.head_class()(**given)
    return entry.head_class()(recipe) if recipe is not None else entry.head_class()()


def check_recipe(kind: str, recipe: str | None) -> str | None:
    """The recipe a `kind` head trains with: `recipe`, else the head's default; None for a head without recipes.

    The one check of a head's recipe (`make_head` applies it, the CLI calls it before reading any cache):
    `UsageError` for a recipe the head does not have, or any recipe for a head without them.
    """
    entry = get_head_entry(kind)
    if not entry.recipes:
        if recipe is not None:
            with_recipes = [e for e in HEADS.values() if e.recipes]
            raise UsageError(f"--recipe applies to {', '.join(e.kind for e in with_recipes)} only, not {kind} "
                             f"(recipes: {'; '.join(e.kind + ' ' + '|'.join(e.recipes) for e in with_recipes)})")
        return None
    if recipe not in (None,) + entry.recipes:
        raise UsageError(f"unknown recipe {recipe!r} for {kind}; choose one of: {', '.join(entry.recipes)}")
    return recipe or entry.recipes[0]
