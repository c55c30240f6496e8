"""Classifier heads fitted on cached features (see `pipeline.heads.base` for the interface)."""

from __future__ import annotations

from pipeline.heads.gap_dense import RECIPES, GapDenseHead
from pipeline.heads.linear import LinearSVMHead, LogisticRegressionHead

HEAD_KINDS = {head.kind: head for head in (GapDenseHead, LogisticRegressionHead, LinearSVMHead)}


def make_head(kind: str, recipe: str | None = None):
    """A new, unfitted head of `kind`; `recipe` applies to gap-dense only."""
    if kind not in HEAD_KINDS:
        raise ValueError(f"unknown head {kind!r}; choose one of: {', '.join(HEAD_KINDS)}")
    if kind == GapDenseHead.kind:
        return GapDenseHead(recipe or "default")
    if recipe is not None:
        raise ValueError(f"--recipe applies to gap-dense only, not {kind}")
    return HEAD_KINDS[kind]()


__all__ = ["HEAD_KINDS", "RECIPES", "make_head"]
