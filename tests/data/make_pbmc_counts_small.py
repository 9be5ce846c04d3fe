"""Rebuild ``pbmc_counts_small.h5ad`` from scanpy's bundled ``10x_pbmc68k_reduced.h5ad``.

Usage: python make_pbmc_counts_small.py PATH/TO/10x_pbmc68k_reduced.h5ad

That file (shipped inside the scanpy wheel, BSD-3-Clause package) holds 700 cells of the
10x Genomics "Fresh 68k PBMCs (Donor A)" dataset (CC BY 4.0; Zheng et al. 2017, Nat. Commun.
8:14049) over 765 genes: ``X`` scaled, ``raw.X`` = log1p(counts / n_counts * 1e4). The integer
UMI counts are recovered exactly as round(expm1(raw.X) * n_counts / 1e4) (largest deviation
before rounding: 0.08 at count 259; 7.6e-4 relative). Note ``n_counts`` is the total over all
genes of the original data, not over these 765.
"""

import sys

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

src = ad.read_h5ad(sys.argv[1])
log_norm = src.raw.X.tocsr().astype(np.float64)
log_norm.data = np.expm1(log_norm.data)
counts = sp.csr_matrix(sp.diags(src.obs["n_counts"].to_numpy(np.float64) / 1e4) @ log_norm)
assert np.abs(counts.data - np.round(counts.data)).max() < 0.1
counts.data = np.round(counts.data)
counts = counts.astype(np.int32)
obs = pd.DataFrame(
    {
        "cell_type": src.obs["bulk_labels"].astype("category"),
        "louvain": src.obs["louvain"].astype("category"),
        "n_counts": src.obs["n_counts"].astype(np.float32),
    },
    index=src.obs_names,
)
out = ad.AnnData(
    X=counts,
    obs=obs,
    var=pd.DataFrame(index=src.raw.var_names),
    obsm={
        "X_umap": src.obsm["X_umap"].astype(np.float32),
        "X_pca": src.obsm["X_pca"][:, :20].astype(np.float32),
    },
)
out.uns["organism"] = "Homo sapiens"
out.write_h5ad("pbmc_counts_small.h5ad", compression="gzip")
print(out)
