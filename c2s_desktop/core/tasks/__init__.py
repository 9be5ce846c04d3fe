"""C2S tasks: each a function (data, engine, options, progress, cancel) → result dataclass."""
