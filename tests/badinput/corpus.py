"""The bad-input corpus: malformed files and arguments, each built from code in a temp folder.

Every :class:`Case` has an id, a ``build(folder) -> path`` that writes the bad input, the
command line that feeds it to the real CLI, and a phrase the one-line error must contain.
``good`` files (the demo data and model) are read-only inputs shared by the cases.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import scipy.sparse as sp

from c2s_desktop.core.resources import resource_path
from tests.conftest import write_h5ad

DATA = resource_path("demo", "pbmc_demo.h5ad")
MODEL = resource_path("demo", "c2s-demo-pbmc.q8_0.gguf")
OUT = "out"  # every command writes (if anything) into the folder's ``out`` subfolder
QUANTIZE = "c2s-quantize"

Argv = Callable[[Path, Path], list[str]]


@dataclass(frozen=True)
class Case:
    """One bad input. ``argv(bad, out_dir)`` is the CLI call (``c2s ...`` or ``c2s-quantize``).

    ``names_file``: the error line must contain the bad file's path (False for pure option
    errors). ``opens``: the file opens fine and fails later (no GUI open-dialog check).
    """

    id: str
    kind: str  # h5ad, gguf, checkpoint, cli
    build: Callable[[Path], Path]
    phrase: str
    argv: Argv
    names_file: bool = True
    opens: bool = False
    tool: str = "c2s"  # or "c2s-quantize"


# -- h5ad builders -----------------------------------------------------------------------------
def _counts(n: int = 30, g: int = 20, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    return sp.csr_matrix(rng.poisson(1.0, size=(n, g)).astype(np.float32))


def _good(folder: Path, name: str = "good.h5ad") -> Path:
    return write_h5ad(folder / name, _counts())


def _with_values(value: float) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        X = _counts().toarray()
        X[3, 4] = value
        return write_h5ad(folder / "values.h5ad", sp.csr_matrix(X))

    return build


def _truncated(folder: Path) -> Path:
    good = _good(folder, "whole.h5ad")
    data = good.read_bytes()
    good.unlink()
    path = folder / "truncated.h5ad"
    path.write_bytes(data[: len(data) // 2])
    return path


def _not_hdf5(folder: Path) -> Path:
    path = folder / "notes.h5ad"
    path.write_text("cell,gene,value\nc1,CD3E,4\n")
    return path


def _empty_file(folder: Path) -> Path:
    path = folder / "empty.h5ad"
    path.touch()
    return path


def _hdf5_not_anndata(folder: Path) -> Path:
    path = folder / "plain.h5"
    with h5py.File(path, "w") as f:
        f["matrix"] = np.ones((3, 3))
    return path


def _duplicate_genes(folder: Path) -> Path:
    genes = ["CD3E", "MS4A1", "CD3E"] + [f"G{i}" for i in range(17)]
    return write_h5ad(folder / "dups.h5ad", _counts(), genes)


def _no_cells(folder: Path) -> Path:
    return write_h5ad(folder / "nocells.h5ad", sp.csr_matrix((0, 20), dtype=np.float32))


def _no_genes(folder: Path) -> Path:
    return write_h5ad(folder / "nogenes.h5ad", sp.csr_matrix((30, 0), dtype=np.float32))


def _all_zero(folder: Path) -> Path:
    return write_h5ad(folder / "zeros.h5ad", sp.csr_matrix((30, 20), dtype=np.float32))


def _ensembl_unknown(folder: Path) -> Path:
    genes = [f"ENSG9{i:010d}" for i in range(20)]  # Ensembl-shaped, in no GENCODE release
    return write_h5ad(folder / "ensembl.h5ad", _counts(), genes)


def _string_matrix(folder: Path) -> Path:
    path = _good(folder, "strings.h5ad")
    with h5py.File(path, "r+") as f:
        del f["X"]
        f["X"] = np.full((30, 20), b"high", dtype="S4")
        f["X"].attrs["encoding-type"] = "array"
        f["X"].attrs["encoding-version"] = "0.2.0"
    return path


def _complex_matrix(folder: Path) -> Path:
    path = _good(folder, "complex.h5ad")
    with h5py.File(path, "r+") as f:
        data = f["X"]["data"][()]
        del f["X"]["data"]
        f["X"]["data"] = data.astype(np.complex64)
    return path


def _huge_gene_name(folder: Path) -> Path:
    genes = ["G" * 5_000_000] + [f"G{i}" for i in range(19)]
    return write_h5ad(folder / "hugename.h5ad", _counts(), genes)


def _shape_mismatch(folder: Path) -> Path:
    path = _good(folder, "shape.h5ad")
    with h5py.File(path, "r+") as f:
        f["X"].attrs["shape"] = np.array([31, 20])
    return path


def _bad_indptr(folder: Path) -> Path:
    path = _good(folder, "indptr.h5ad")
    with h5py.File(path, "r+") as f:
        indptr = f["X"]["indptr"][()]
        indptr[5] = indptr[-1] + 1000
        f["X"]["indptr"][...] = indptr
    return path


def _bad_indices(folder: Path) -> Path:
    path = _good(folder, "indices.h5ad")
    with h5py.File(path, "r+") as f:
        indices = f["X"]["indices"][()]
        indices[0] = 10_000
        f["X"]["indices"][...] = indices
    return path


def _missing_indptr(folder: Path) -> Path:
    path = _good(folder, "noindptr.h5ad")
    with h5py.File(path, "r+") as f:
        del f["X"]["indptr"]
    return path


def _obs_not_a_table(folder: Path) -> Path:
    path = _good(folder, "obs.h5ad")
    with h5py.File(path, "r+") as f:
        del f["obs"]
        f["obs"] = np.arange(30)
    return path


def _one_dimensional_x(folder: Path) -> Path:
    path = _good(folder, "x1d.h5ad")
    with h5py.File(path, "r+") as f:
        del f["X"]
        f["X"] = np.ones(30, dtype=np.float32)
    return path


def _nan_beyond_sample(folder: Path) -> Path:
    """NaN in the middle of a matrix too large for the opening sample: found while ranking."""
    rng = np.random.default_rng(1)
    X = sp.random(3000, 400, density=0.5, format="csr", dtype=np.float32, random_state=rng)
    X.data = np.ceil(X.data * 5)
    X.data[len(X.data) // 2] = np.nan
    return write_h5ad(folder / "latenan.h5ad", X)


def _folder(folder: Path) -> Path:
    path = folder / "a_folder.h5ad"
    path.mkdir()
    return path


def _missing(folder: Path) -> Path:
    return folder / "no_such_file.h5ad"


# -- GGUF builders (from the demo model) -------------------------------------------------------
def patch_gguf(folder: Path, name: str, key: str, value: int | str) -> Path:
    """A copy of the demo model with metadata ``key`` rewritten in place (numbers, or strings of
    the same byte length)."""
    from gguf import GGUFReader

    out = folder / name
    shutil.copy(MODEL, out)
    reader = GGUFReader(out, "r+")
    field = reader.fields[key]
    part = field.parts[field.data[0]]
    part[:] = np.frombuffer(value.encode(), np.uint8) if isinstance(value, str) else value
    reader.data.flush()
    del reader
    return out


def _model_bytes(folder: Path, name: str, edit: Callable[[bytearray], bytes]) -> Path:
    path = folder / name
    path.write_bytes(edit(bytearray(MODEL.read_bytes())))
    return path


def _set_u64(offset: int, value: int) -> Callable[[bytearray], bytes]:
    def edit(data: bytearray) -> bytes:
        data[offset : offset + 8] = value.to_bytes(8, "little")
        return bytes(data)

    return edit


def _gguf_truncated(folder: Path) -> Path:
    return _model_bytes(folder, "cut.gguf", lambda d: bytes(d[: len(d) // 2]))


def _gguf_magic(folder: Path) -> Path:
    return _model_bytes(folder, "magic.gguf", lambda d: b"GGML" + bytes(d[4:]))


def _gguf_empty(folder: Path) -> Path:
    path = folder / "empty.gguf"
    path.touch()
    return path


def _gguf_header_only(folder: Path) -> Path:
    return _model_bytes(folder, "header.gguf", lambda d: bytes(d[:24]))


def _arch(folder: Path) -> Path:
    from gguf import GGUFReader

    arch = str(GGUFReader(MODEL).fields["general.architecture"].contents())
    return patch_gguf(folder, "arch.gguf", "general.architecture", "z" * len(arch))


def _gguf_key(key: str, value: int, name: str) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        from gguf import GGUFReader

        arch = str(GGUFReader(MODEL).fields["general.architecture"].contents())
        return patch_gguf(folder, name, key.format(arch=arch), value)

    return build


def _embedding_doubled(folder: Path) -> Path:
    from gguf import GGUFReader

    reader = GGUFReader(MODEL)
    arch = str(reader.fields["general.architecture"].contents())
    n_embd = int(reader.fields[f"{arch}.embedding_length"].contents())
    return patch_gguf(folder, "shape.gguf", f"{arch}.embedding_length", 2 * n_embd)


# -- checkpoint builders -----------------------------------------------------------------------
@functools.cache
def tiny_checkpoint() -> Path:
    """An untrained tiny GPT-NeoX + BPE checkpoint (the c2s-quantize test builders), built once
    per test session in a temporary folder."""
    from tests.quantize import quantize_builders as qb

    root = Path(tempfile.mkdtemp(prefix="c2s-badinput-"))
    atexit.register(shutil.rmtree, root, True)
    folder = root / "neox"
    qb.train_bpe_tokenizer(folder)
    qb.save_gptneox(folder, 1024)
    return folder


def _ckpt(edit: Callable[[Path], None]) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        copy = shutil.copytree(tiny_checkpoint(), folder / "ckpt")
        edit(copy)
        return copy

    return build


def _no_config(ckpt: Path) -> None:
    (ckpt / "config.json").unlink()


def _llama_config(ckpt: Path) -> None:
    path = ckpt / "config.json"
    path.write_text(
        json.dumps({**json.loads(path.read_text()), "architectures": ["LlamaForCausalLM"]})
    )


def _cut_weights(ckpt: Path) -> None:
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def _no_weights(ckpt: Path) -> None:
    (ckpt / "model.safetensors").unlink()


def _absurd_header_length(ckpt: Path) -> None:
    weights = ckpt / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[:8] = (2**62).to_bytes(8, "little")
    weights.write_bytes(bytes(data))


def _broken_tokenizer(ckpt: Path) -> None:
    (ckpt / "tokenizer.json").write_text("{")


# -- command lines -----------------------------------------------------------------------------
def sentences(bad: Path, out: Path) -> list[str]:
    return ["sentences", str(bad), "-o", str(out / "s.csv")]


def annotate_model(bad: Path, out: Path) -> list[str]:
    return ["annotate", str(DATA), "--model", str(bad), "-o", str(out / "a.h5ad")]


def quantize(bad: Path, out: Path) -> list[str]:
    return [str(bad), "-o", str(out / "m.gguf"), "--threads", "1", "--no-hash-sources"]


def _annotate(*extra: str) -> Argv:
    def argv(bad: Path, out: Path) -> list[str]:
        return [
            "annotate",
            str(DATA),
            "--model",
            str(MODEL),
            "-o",
            str(out / "a.h5ad"),
            *[e.replace("{bad}", str(bad)) for e in extra],
        ]

    return argv


def _sentences(*extra: str) -> Argv:
    def argv(bad: Path, out: Path) -> list[str]:
        return ["sentences", str(bad), "-o", str(out / "s.csv"), *extra]

    return argv


def _data(folder: Path) -> Path:
    """A private copy of the demo data (for argument errors that name the data file)."""
    return Path(shutil.copy(DATA, folder / "data.h5ad"))


def _candidates_blank(folder: Path) -> Path:
    path = folder / "labels.txt"
    path.write_text("\n   \n\n")
    return path


def _existing_output(folder: Path) -> Path:
    data = _data(folder)
    (folder / OUT).mkdir(exist_ok=True)
    (folder / OUT / "s.csv").write_text("previous results\n")
    return data


def _binary_candidates(folder: Path) -> Path:
    path = folder / "labels.bin"
    path.write_bytes(b"\xff\xfe\x00\x81 not text")
    return path


def _absurd_header(name: str, file: str, offset: int, value: int) -> Case:
    """The demo model with the u64 at ``offset`` of its header (tensor count at 8, key-value
    count at 16, the first key's length at 24) set to ``value``, more than any file holds."""
    edit = _set_u64(offset, value)
    return Case(
        name, "gguf", lambda f: _model_bytes(f, file, edit), "truncated or damaged", annotate_model
    )


CASES: tuple[Case, ...] = (
    # h5ad
    Case("h5ad-truncated", "h5ad", _truncated, "truncated or corrupt", sentences),
    Case("h5ad-not-hdf5", "h5ad", _not_hdf5, "not an HDF5", sentences),
    Case("h5ad-empty-file", "h5ad", _empty_file, "empty (0 bytes)", sentences),
    Case(
        "h5ad-hdf5-not-anndata",
        "h5ad",
        _hdf5_not_anndata,
        "neither AnnData nor Cell Ranger",
        sentences,
    ),
    Case("h5ad-nan", "h5ad", _with_values(np.nan), "NaN", sentences),
    Case("h5ad-inf", "h5ad", _with_values(np.inf), "infinite", sentences),
    Case("h5ad-negative", "h5ad", _with_values(-2.5), "negative values", sentences),
    Case("h5ad-nan-beyond-sample", "h5ad", _nan_beyond_sample, "NaN", sentences, opens=True),
    Case(  # merged by default (the GUI opens it): refused with --no-merge-duplicates
        "h5ad-duplicate-genes",
        "h5ad",
        _duplicate_genes,
        "more than once",
        lambda bad, out: [*sentences(bad, out), "--no-merge-duplicates"],
        opens=True,
    ),
    Case("h5ad-no-cells", "h5ad", _no_cells, "0 cells", sentences),
    Case("h5ad-no-genes", "h5ad", _no_genes, "0 genes", sentences),
    Case("h5ad-all-zero", "h5ad", _all_zero, "all sampled values are zero", sentences),
    Case("h5ad-ensembl-unmapped", "h5ad", _ensembl_unknown, "could be mapped", sentences),
    Case("h5ad-string-matrix", "h5ad", _string_matrix, "values of type", sentences),
    Case("h5ad-complex-matrix", "h5ad", _complex_matrix, "complex64", sentences),
    Case("h5ad-huge-gene-name", "h5ad", _huge_gene_name, "characters long", sentences),
    Case("h5ad-shape-mismatch", "h5ad", _shape_mismatch, "has shape", sentences),
    Case("h5ad-bad-indptr", "h5ad", _bad_indptr, "inconsistent sparse index", sentences),
    Case("h5ad-bad-indices", "h5ad", _bad_indices, "indices outside", sentences),
    Case(
        "h5ad-missing-indptr", "h5ad", _missing_indptr, "not a matrix anndata can read", sentences
    ),
    Case("h5ad-obs-not-table", "h5ad", _obs_not_a_table, "'obs'", sentences),
    Case("h5ad-1d-matrix", "h5ad", _one_dimensional_x, "not a 2-D matrix", sentences),
    Case("h5ad-folder", "h5ad", _folder, "folder without matrix.mtx", sentences),
    Case("h5ad-missing", "h5ad", _missing, "file not found", sentences),
    # GGUF
    Case("gguf-truncated", "gguf", _gguf_truncated, "truncated", annotate_model),
    Case("gguf-wrong-magic", "gguf", _gguf_magic, "wrong magic", annotate_model),
    Case("gguf-empty", "gguf", _gguf_empty, "not a GGUF file", annotate_model),
    Case("gguf-header-only", "gguf", _gguf_header_only, "truncated or damaged", annotate_model),
    Case("gguf-unknown-architecture", "gguf", _arch, "is not supported", annotate_model),
    Case("gguf-inconsistent-shapes", "gguf", _embedding_doubled, "has shape", annotate_model),
    _absurd_header("gguf-absurd-tensor-count", "tensors.gguf", 8, 2**60),
    _absurd_header("gguf-absurd-kv-count", "kvs.gguf", 16, 2**60),
    _absurd_header("gguf-absurd-key-length", "keylen.gguf", 24, 2**62),
    Case(
        "gguf-layer-count",
        "gguf",
        _gguf_key("{arch}.block_count", 7, "layers.gguf"),
        "layers",
        annotate_model,
    ),
    Case(
        "gguf-rope-too-large",
        "gguf",
        _gguf_key("{arch}.rope.dimension_count", 4096, "rope.gguf"),
        "impossible model metadata",
        annotate_model,
    ),
    Case(
        "gguf-zero-context",
        "gguf",
        _gguf_key("{arch}.context_length", 0, "ctx.gguf"),
        "must be positive",
        annotate_model,
    ),
    Case(
        "gguf-missing",
        "gguf",
        lambda folder: folder / "no_such_model.gguf",
        "model file not found",
        annotate_model,
    ),
    # checkpoints (c2s-quantize)
    Case("ckpt-no-config", "checkpoint", _ckpt(_no_config), "config.json", quantize, tool=QUANTIZE),
    Case(
        "ckpt-unknown-architecture",
        "checkpoint",
        _ckpt(_llama_config),
        "LlamaForCausalLM",
        quantize,
        tool=QUANTIZE,
    ),
    Case("ckpt-truncated", "checkpoint", _ckpt(_cut_weights), "truncated", quantize, tool=QUANTIZE),
    Case(
        "ckpt-no-weights", "checkpoint", _ckpt(_no_weights), "safetensors", quantize, tool=QUANTIZE
    ),
    Case(
        "ckpt-absurd-header",
        "checkpoint",
        _ckpt(_absurd_header_length),
        "model.safetensors",
        quantize,
        tool=QUANTIZE,
    ),
    Case(
        "ckpt-broken-tokenizer",
        "checkpoint",
        _ckpt(_broken_tokenizer),
        "invalid JSON",
        quantize,
        tool=QUANTIZE,
    ),
    # command-line arguments
    Case(
        "cli-unknown-mode",
        "cli",
        _data,
        "unknown --mode",
        _annotate("--mode", "fast"),
        names_file=False,
    ),
    Case(
        "cli-two-candidate-sources",
        "cli",
        _candidates_blank,
        "not both",
        _annotate("--candidates", "{bad}", "--candidates-from", "cell_type"),
        names_file=False,
    ),
    Case(
        "cli-blank-candidates",
        "cli",
        _candidates_blank,
        "no labels",
        _annotate("--candidates", "{bad}"),
    ),
    Case(
        "cli-binary-candidates",
        "cli",
        _binary_candidates,
        "cannot read candidates",
        _annotate("--candidates", "{bad}"),
    ),
    Case(
        "cli-output-exists", "cli", _existing_output, "already exists", sentences, names_file=False
    ),
    Case(
        "cli-unknown-source",
        "cli",
        _data,
        "no expression source",
        _sentences("--source", "layer:nope"),
    ),
    Case(
        "cli-unknown-organism", "cli", _data, "unknown organism", _sentences("--organism", "yeast")
    ),
    Case("cli-unknown-obs", "cli", _data, "no obs column", _sentences("--obs", "nope")),
    Case("cli-unknown-symbols", "cli", _data, "no gene column", _sentences("--symbols", "nope")),
    Case(
        "cli-unknown-cells-column",
        "cli",
        _data,
        "no obs column",
        _annotate("--cells", "nope=1", "--candidates-from", "cell_type"),
        names_file=False,
    ),
    Case(
        "cli-top-k-zero",
        "cli",
        _data,
        "--top-k",
        _sentences("--top-k", "0"),
        names_file=False,
    ),
    Case(
        "cli-output-folder-missing",
        "cli",
        _data,
        "folder does not exist",
        lambda bad, out: ["sentences", str(bad), "-o", str(out / "nowhere" / "s.csv")],
        names_file=False,
    ),
    Case(
        "cli-context-too-large-for-memory",
        "cli",
        _data,
        "of memory",
        _annotate("--ctx", "100000000", "--candidates-from", "cell_type"),
        names_file=False,
    ),
)

H5AD_CASES = tuple(c for c in CASES if c.kind == "h5ad")
