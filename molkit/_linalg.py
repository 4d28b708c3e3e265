"""Principal axes and orthonormal complements that cannot fail on rank-deficient data.

LAPACK's divide-and-conquer SVD (``gesdd``: NumPy's ``svd``, SciPy's default, scikit-learn's
``PCA(svd_solver="full")``) can raise "SVD did not converge" on a matrix whose rank is below its
width, which is what a projection onto a complement produces by construction (MoleX's residual
calibration met one with condition number ~5e15 on bf16 features). The functions here use the
QR-iteration SVD (``gesvd``), which converges on such matrices, and fall back to the eigenvectors
of the Gram matrix should even that fail, so their callers never see a convergence error.
"""

from __future__ import annotations

import numpy as np


def _svd(M: np.ndarray, full_matrices: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(U, s, Vt) of M by ``gesvd``; by the eigen-decomposition of M^T M if that fails."""
    import scipy.linalg

    try:
        return scipy.linalg.svd(M, full_matrices=full_matrices, lapack_driver="gesvd")
    except np.linalg.LinAlgError:  # pragma: no cover - gesvd converged on every matrix tried
        evals, V = np.linalg.eigh(M.T @ M)
        order = np.argsort(evals)[::-1]
        s = np.sqrt(np.clip(evals[order], 0, None))
        Vt = V[:, order].T
        U = M @ Vt.T / np.where(s > 0, s, 1.0)
        return U, s, Vt


def principal_axes(X: np.ndarray, n_components: int) -> np.ndarray:
    """The top ``n_components`` principal axes (k, d) of the rows of X (n, d), after centring.

    Each axis has unit norm and the sign that makes its largest-magnitude entry positive (so the
    result does not depend on the LAPACK build). ``k`` is at most ``min(n, d)``; axes beyond
    X's rank span directions of zero variance."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"principal_axes needs a 2-D array (n, d), got shape {X.shape}")
    k = int(min(n_components, *X.shape))
    if k < 1:
        raise ValueError(
            f"cannot take {n_components} principal axes of an array of shape {X.shape}"
        )
    _, _, Vt = _svd(X - X.mean(0), full_matrices=False)
    V = Vt[:k]
    signs = np.sign(V[np.arange(k), np.argmax(np.abs(V), axis=1)])
    return V * np.where(signs == 0, 1.0, signs)[:, None]


def pca_scores(X: np.ndarray, n_components: int) -> np.ndarray:
    """X's centred rows projected on its `principal_axes`: (n, k), as ``PCA.fit_transform``."""
    X = np.asarray(X, dtype=np.float64)
    return (X - X.mean(0)) @ principal_axes(X, n_components).T


def orthonormal_complement(M: np.ndarray, rtol: float | None = None) -> np.ndarray:
    """An orthonormal basis (d, d - r) of the orthogonal complement of M's column space (M: (d, m),
    r its numerical rank: singular values above ``rtol`` times the largest, by default
    ``max(d, m)`` times the machine epsilon)."""
    M = np.asarray(M, dtype=np.float64)
    if M.ndim != 2:
        raise ValueError(f"orthonormal_complement needs a 2-D array (d, m), got shape {M.shape}")
    d = M.shape[0]
    if M.size == 0:
        return np.eye(d)
    U, s, _ = _svd(M, full_matrices=True)
    rtol = max(M.shape) * np.finfo(np.float64).eps if rtol is None else rtol
    rank = int(np.sum(s > rtol * s.max())) if s.size and s.max() > 0 else 0
    return U[:, rank:]
