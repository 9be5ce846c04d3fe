"""The context size a model runs with when none is asked for."""

MAX_AUTO_CTX = 8192
"""Largest context chosen automatically: a bigger one costs memory most prompts never use."""
DEFAULT_CTX = 2048
"""For models that do not record their training context."""


def auto_context(n_ctx_train: int | None, requested: int = 0) -> int:
    """``requested`` when given (> 0), else the model's training context, at most 8192."""
    if requested > 0:
        return requested
    return min(n_ctx_train or DEFAULT_CTX, MAX_AUTO_CTX)
