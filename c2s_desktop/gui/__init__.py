"""PySide6 user interface of C2S Desktop (thin: widgets wired to core calls)."""
