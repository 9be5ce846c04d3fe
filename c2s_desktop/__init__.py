"""C2S Desktop: offline Cell2Sentence analysis of single-cell RNA-seq data."""

__version__ = "0.1.0"
