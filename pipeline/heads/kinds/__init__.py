"""Classifier heads fitted on cached features (see `pipeline.heads.kinds.base` for the interface)."""

from __future__ import annotations

from pipeline.heads.kinds.gap_dense import GAP_DENSE_RECIPES, GapDenseHead, MLPHead
from pipeline.heads.kinds.knn import CosineKNNHead
from pipeline.heads.kinds.linear import LinearSVMHead, LogisticRegressionHead
from pipeline.errors import UsageError

HEAD_KINDS = {head.kind: head for head in (GapDenseHead, LogisticRegressionHead, LinearSVMHead, MLPHead, CosineKNNHead)}


def make_head(kind: str, recipe: str | None = None):
    """A new, unfitted head of `kind`; `recipe` applies to gap-dense only."""
    if kind not in HEAD_KINDS:
        raise UsageError(f"unknown head {kind!r}; choose one of: {', '.join(HEAD_KINDS)}")
    if kind == GapDenseHead.kind:
        if recipe not in (None,) + GAP_DENSE_RECIPES:
            raise UsageError(f"unknown recipe {recipe!r}; choose one of: {', '.join(GAP_DENSE_RECIPES)}")
        return GapDenseHead(recipe or "default")
    if recipe is not None:
        raise UsageError(f"--recipe applies to gap-dense only, not {kind}")
    return HEAD_KINDS[kind]()


__all__ = ["GAP_DENSE_RECIPES", "HEAD_KINDS", "make_head"]
