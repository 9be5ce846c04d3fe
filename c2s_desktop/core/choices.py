"""Option values that mean "choose for me" (a light module: the CLI reads them at start-up)."""

SOURCE_AUTO = "auto"
"""Expression source chosen from what the file holds (see :mod:`.dataset`)."""
SYMBOLS_AUTO = "auto"
"""Gene symbols from var names or a var column, whichever names genes (see :mod:`.genes`)."""
