"""The head families, one module each; `pipeline.heads.registry` names them (see `base` for the interface)."""
