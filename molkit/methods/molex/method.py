"""MoleX's algorithm: information-bottleneck fine-tuning of the LM's top layers, n-gram features
read at the bottleneck mean, the sparse (EFPCA-inspired) reduction, the explainable logistic
regression and residual calibration.

Every map after the n-gram embeddings is affine, so a fitted `MolexModel` is one map
``logits = x @ W + c`` over the summed n-gram features (`molkit.methods.molex.ngrams`), and each
n-gram's contribution is ``e_g @ W`` (`MolexModel.ngram_contributions`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from molkit._linalg import orthonormal_complement, principal_axes
from molkit.models.fit import fit
from molkit.models.prefix import PrefixStates, bucketed_order, pool, run_layers
from molkit.models.runtime import autocast

__all__ = [
    "FEATURE_SPACES",
    "FineTuneHistory",
    "IBClassifier",
    "LinearReduction",
    "MolexModel",
    "classification_scores",
    "embed_prefix",
    "finetune_ib",
    "fit_molex",
    "fit_reduction",
    "log_loss",
    "predict_proba_lm",
    "sparse_loadings",
]

# --------------------------------------------------------------------------- the LM with a VIB head


class IBClassifier(nn.Module):
    """The LM's top layers + pooling + variational information bottleneck head.

    ``h = pool(top_layers(prefix states))``; ``mu, log_var = linear(h)``;
    ``z ~ N(mu, exp(log_var))`` in training (``mu`` in evaluation); ``logits = linear(z)`` over
    ``n_classes``. ``forward`` returns (logits (B, n_classes), KL to N(0, I) per example (B,)).
    ``n_trainable_layers = 0`` keeps the whole LM frozen: only the bottleneck head trains, on the
    pooled output of the last layer (the "no fine-tuning" ablation keeps MoleX's feature).
    """

    def __init__(
        self,
        model,
        n_classes: int,
        n_trainable_layers: int,
        bottleneck_dim: int = 64,
        pooling: str = "mean",
    ):
        super().__init__()
        n_layers = len(model.encoder.layer)
        self.config = model.config
        self.layers = copy.deepcopy(model.encoder.layer[n_layers - n_trainable_layers :])
        hidden = model.config.hidden_size
        self.mu = nn.Linear(hidden, bottleneck_dim)
        self.log_var = nn.Linear(hidden, bottleneck_dim)
        self.head = nn.Linear(bottleneck_dim, n_classes)
        self.pooling = pooling
        self.n_frozen = n_layers - n_trainable_layers
        self.n_classes = n_classes

    def embed(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pooled LM embedding (B, hidden) of prefix states: the vector MoleX sums per n-gram.
        The layers run under the precision policy (`molkit.models.runtime.autocast`)."""
        with autocast(hidden.device):
            out = run_layers(self.layers, self.config, hidden, mask)
        return pool(out.float(), mask, self.pooling)

    def forward(
        self, hidden: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.embed(hidden, mask)
        mu, log_var = self.mu(h), self.log_var(h).clamp(-10, 10)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var) if self.training else mu
        kl = 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var).sum(-1)
        return self.head(z), kl


@dataclass
class FineTuneHistory:
    """What `finetune_ib` did: ``records`` (one row per evaluation, `FINE_TUNE_COLUMNS`; epoch 0
    is the untrained head), the epoch whose weights were kept (``best_epoch``; 0: no epoch
    improved on the start), the maximum (``max_epochs``) and whether patience stopped the run."""

    records: pd.DataFrame
    best_epoch: int
    max_epochs: int = 0
    stopped_early: bool = False

    @property
    def epochs_run(self) -> int:
        return int(self.records["epoch"].max()) if len(self.records) else 0

    def summary(self) -> str:
        """One line: epochs run of the maximum, the kept epoch and its validation figures."""
        if not len(self.records):
            return "not trained (0 epochs)"
        first = self.records.iloc[0]
        kept = self.records[self.records["epoch"] == self.best_epoch].iloc[0]
        text = (
            f"{self.epochs_run} of at most {self.max_epochs} epochs, kept epoch {self.best_epoch} "
            f"(validation cross-entropy {kept['valid_ce']:.3f}, accuracy "
            f"{kept['valid_accuracy']:.3f}; {first['valid_ce']:.3f} before training)"
        )
        return text + (", stopped on patience" if self.stopped_early else "")


#: The vectors `embed_prefix` can return: the bottleneck mean, or the pooled LM output under it.
FEATURE_SPACES = ("mu", "pooled")


@torch.no_grad()
def embed_prefix(
    clf: IBClassifier, prefix: PrefixStates, space: str = "mu", batch_size: int = 128
) -> np.ndarray:
    """Embeddings float32 of prefix states through ``clf``: ``space="mu"`` (default) the
    bottleneck mean ``mu(h)`` (n, bottleneck_dim), the vector the KL term shapes directly and the
    classifier reads; ``"pooled"`` the pooled top-layer output ``h`` (n, hidden) under it."""
    if space not in FEATURE_SPACES:
        raise ValueError(f"space must be one of {FEATURE_SPACES}, not {space!r}")
    clf.eval()
    width = clf.mu.out_features if space == "mu" else clf.config.hidden_size
    out = np.zeros((len(prefix), width), dtype=np.float32)
    for idx, hidden, mask in prefix.batches(batch_size):
        h = clf.embed(hidden, mask)
        out[idx] = (clf.mu(h) if space == "mu" else h).numpy()
    return out


@torch.no_grad()
def _predict_logits(clf: IBClassifier, prefix: PrefixStates, batch_size: int = 128) -> np.ndarray:
    clf.eval()
    out = np.zeros((len(prefix), clf.n_classes), dtype=np.float32)
    for idx, hidden, mask in prefix.batches(batch_size):
        out[idx] = clf(hidden, mask)[0].numpy()
    return out


#: The columns of `finetune_ib`'s history, one row per evaluation (epoch 0: before training).
FINE_TUNE_COLUMNS = ("epoch", "train_ce", "train_kl", "valid_ce", "valid_accuracy")


def finetune_ib(
    model,
    train: PrefixStates,
    y_train: np.ndarray,
    valid: PrefixStates,
    y_valid: np.ndarray,
    n_classes: int,
    n_trainable_layers: int,
    beta: float = 1e-3,
    epochs: int = 8,
    patience: int = 2,
    lr: float = 1e-4,
    head_lr: float = 1e-3,
    batch_size: int = 32,
    bottleneck_dim: int = 64,
    pooling: str = "mean",
    seed: int = 0,
    progress: bool = True,
) -> tuple[IBClassifier, FineTuneHistory]:
    """Fine-tune the top ``n_trainable_layers`` of ``model`` with a VIB head on the training
    split: loss = cross-entropy + ``beta`` * KL(N(mu, sigma^2) || N(0, I)). ``beta = 0`` is plain
    fine-tuning with the same head; ``n_trainable_layers = 0`` trains the head alone on the frozen
    LM. ``epochs`` is a maximum: the validation part (``valid``, ``y_valid``) is evaluated before
    the first epoch and after each (`molkit.models.fit.fit`), the state with the lowest
    validation cross-entropy is kept (possibly the untrained head) and ``patience`` epochs without
    improvement stop the run. ``epochs = 0`` returns the untrained head. ``model`` itself is not
    modified."""
    if (
        train.n_frozen != valid.n_frozen
        or train.n_frozen != len(model.encoder.layer) - n_trainable_layers
    ):
        raise ValueError(
            "prefix states were computed for another number of trainable layers; "
            "rerun encode_prefix"
        )
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    clf = IBClassifier(model, n_classes, n_trainable_layers, bottleneck_dim, pooling)
    head_params = [*clf.mu.parameters(), *clf.log_var.parameters(), *clf.head.parameters()]
    groups = [{"params": head_params, "lr": head_lr}]
    if n_trainable_layers:
        groups.insert(0, {"params": list(clf.layers.parameters()), "lr": lr})
    optimiser = torch.optim.AdamW(groups, weight_decay=0.01)
    y_tr = torch.as_tensor(np.asarray(y_train), dtype=torch.long)
    y_va = torch.as_tensor(np.asarray(y_valid), dtype=torch.long)
    ce = nn.CrossEntropyLoss()
    if epochs == 0:
        clf.eval()
        return clf, FineTuneHistory(pd.DataFrame(columns=list(FINE_TUNE_COLUMNS)), 0, 0)
    kl_sum = [0.0]

    def step(item) -> tuple[float, float]:
        idx, hidden, mask = item
        clf.train()
        logits, kl = clf(hidden, mask)
        loss_ce = ce(logits, y_tr[idx])
        loss = loss_ce + beta * kl.mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        kl_sum[0] += kl.mean().item() * len(idx)
        return loss_ce.item() * len(idx), float(len(idx))

    def validate() -> dict[str, float]:
        # the epoch's mean KL rides along with the validation figures, one row per epoch
        train_kl, kl_sum[0] = kl_sum[0] / len(train), 0.0
        logits = torch.from_numpy(_predict_logits(clf, valid))
        return {
            "valid_ce": float(ce(logits, y_va)),
            "valid_accuracy": float((logits.argmax(1) == y_va).float().mean()),
            "train_kl": train_kl,
        }

    order = lambda: bucketed_order(train, batch_size, rng)  # noqa: E731 - drawn as each epoch starts
    report = fit(
        step,
        (train.batches(batch_size, order=order()) for _ in range(epochs)),
        validate=validate,
        monitor="valid_ce",
        patience=patience,
        state=clf.state_dict,
        eval_at_start=True,
        desc=f"IB fine-tuning (beta={beta:g})",
        progress=progress,
    )
    clf.eval()
    rows = [
        {"epoch": int(r["epoch"]), "train_ce": r["train_loss"],
         "train_kl": r["train_kl"] if r["epoch"] else np.nan, "valid_ce": r["valid_ce"],
         "valid_accuracy": r["valid_accuracy"]}
        for r in report.curve
    ]  # fmt: skip
    return clf, FineTuneHistory(
        pd.DataFrame(rows, columns=list(FINE_TUNE_COLUMNS)),
        int(report.best_epoch),
        epochs,
        report.stopped_early,
    )


def predict_proba_lm(clf: IBClassifier, prefix: PrefixStates) -> np.ndarray:
    """Class probabilities (n, n_classes) of the fine-tuned LM classifier (bottleneck mean)."""
    return torch.softmax(torch.from_numpy(_predict_logits(clf, prefix)), -1).numpy()


# --------------------------------------------------------------------------- the linear model


@dataclass
class LinearReduction:
    """An affine reduction ``z = x @ A + b`` (A: (d, k)), fit on training rows and standardised
    so every output has mean 0, variance 1 on them. ``loadings`` (k, d) are the components
    (sparse for ``method="sparse"``)."""

    A: np.ndarray
    b: np.ndarray
    loadings: np.ndarray
    method: str

    def transform(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64) @ self.A + self.b

    @property
    def n_components(self) -> int:
        return self.A.shape[1]

    @property
    def sparsity(self) -> float:
        """Fraction of exactly-zero loadings."""
        return float(np.mean(self.loadings == 0))


def _standardiser(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = X.mean(0)
    scale = X.std(0)
    return mean, np.where(scale > 1e-12, scale, 1.0)


def _affine(
    mean: np.ndarray,
    scale: np.ndarray,
    M: np.ndarray,
    X: np.ndarray,
    loadings: np.ndarray,
    method: str,
) -> LinearReduction:
    """Compose x -> ((x - mean) / scale) @ M -> standardised, as one affine map."""
    A = M / scale[:, None]
    b = -(mean / scale) @ M
    z = X @ A + b
    z_mean, z_scale = _standardiser(z)
    return LinearReduction(A / z_scale, (b - z_mean) / z_scale, loadings, method)


def sparse_loadings(
    X: np.ndarray, n_components: int, alpha: float = 0.3, max_iter: int = 1000, tol: float = 1e-8
) -> np.ndarray:
    """Sparse principal loadings (k, d) of centred X (n, d), one rank-1 component at a time
    (sPCA-rSVD, Shen & Huang 2008): alternate ``u = Xv / |Xv|`` and ``v = S(X^T u) / |S(X^T u)|``
    with S the soft threshold at ``alpha`` times the largest entry (``alpha`` in [0, 1): 0 gives
    ordinary principal axes, larger values zero more loadings), then deflate X by ``X v v^T``.
    Each loading has unit norm; the sign makes its largest entry positive."""
    if not 0 <= alpha < 1:
        raise ValueError(f"alpha is a relative soft threshold in [0, 1), got {alpha}")
    R = np.array(X, dtype=np.float64)
    out = np.zeros((n_components, R.shape[1]))
    for j in range(n_components):
        v = R[
            np.argmax(np.linalg.norm(R, axis=1))
        ]  # start from the longest row: never orthogonal to the top axis
        v = v / max(np.linalg.norm(v), 1e-300)
        for _ in range(max_iter):
            u = R @ v
            norm = np.linalg.norm(u)
            if norm == 0:
                break
            w = R.T @ (u / norm)
            w = np.sign(w) * np.maximum(np.abs(w) - alpha * np.abs(w).max(), 0)
            v_new = w / max(np.linalg.norm(w), 1e-300)
            done = np.linalg.norm(v_new - v) < tol
            v = v_new
            if done:
                break
        v = v if v[np.argmax(np.abs(v))] >= 0 else -v
        out[j] = v
        R = R - np.outer(R @ v, v)
    return out


def fit_reduction(
    X: np.ndarray, n_components: int, method: str = "sparse", alpha: float = 0.3, seed: int = 0
) -> LinearReduction:
    """Fit the dimensionality reduction on training features X (n, d), standardised per column.

    ``method="sparse"``: the EFPCA-inspired reduction: scores are projections on L1-sparse
    loadings (`sparse_loadings`, relative soft threshold ``alpha``). ``method="pca"``: plain PCA.
    """
    X = np.asarray(X, dtype=np.float64)
    k = int(min(n_components, X.shape[0] - 1, X.shape[1]))
    if k < 1:
        raise ValueError(f"cannot fit {n_components} components on {X.shape[0]} rows")
    mean, scale = _standardiser(X)
    Xs = (X - mean) / scale
    if method == "sparse":
        loadings = sparse_loadings(Xs, k, alpha)
    elif method == "pca":
        loadings = principal_axes(Xs, k)
    else:
        raise ValueError(f"method must be 'sparse' or 'pca', not {method!r}")
    return _affine(mean, scale, loadings.T, X, loadings, method)


def _complement(
    X: np.ndarray, main: LinearReduction, n_components: int, seed: int = 0
) -> LinearReduction:
    """PCA of the training features in the orthogonal complement of the directions the main
    reduction reads (the column space of ``main.A``), as an affine map on raw x.

    The features are expressed in an orthonormal basis B of that complement, (n, d - r), which
    has full column rank by construction; projecting onto the complement inside the d columns
    instead (``Xs @ (I - QQ^T)``) leaves a rank-deficient matrix on which LAPACK's
    divide-and-conquer SVD can fail to converge (issue #39)."""
    mean, scale = _standardiser(X)
    Xs = (X - mean) / scale
    B = orthonormal_complement(main.A * scale[:, None])  # main.A in standardised coordinates
    k = int(min(n_components, X.shape[0] - 1, B.shape[1]))
    if k < 1:
        raise ValueError(
            f"no complement left: the main reduction reads {X.shape[1] - B.shape[1]} of "
            f"{X.shape[1]} feature directions on {X.shape[0]} training rows"
        )
    V = principal_axes(Xs @ B, k) @ B.T  # (k, d): the complement's axes in standardised x
    return _affine(mean, scale, V.T, X, V, "complement")


def _proba(F: np.ndarray, n_classes: int) -> np.ndarray:
    if n_classes == 2:
        p1 = 1 / (1 + np.exp(-np.clip(F[:, 0], -50, 50)))
        return np.column_stack([1 - p1, p1])
    F = F - F.max(1, keepdims=True)
    e = np.exp(F)
    return e / e.sum(1, keepdims=True)


def _log_loss(y: np.ndarray, P: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(P[np.arange(len(y)), y], 1e-12, 1))))


def _targets(y: np.ndarray, n_classes: int) -> np.ndarray:
    if n_classes == 2:
        return y.astype(float)[:, None]
    return np.eye(n_classes)[y]


@dataclass
class MolexModel:
    """A fitted MoleX model: reduction + logistic regression (+ residual calibration).

    Scores (n, n_out) are logits: one column for binary tasks (class 1), one per class otherwise.
    ``calibration`` holds the complement reduction and its accumulated linear map, or None.
    """

    reduction: LinearReduction
    coef: np.ndarray
    intercept: np.ndarray
    n_classes: int
    complement: LinearReduction | None = None
    calib_coef: np.ndarray | None = None
    calib_intercept: np.ndarray | None = None
    history: pd.DataFrame = field(default_factory=pd.DataFrame)
    calib_rounds: int = 0
    calib_cap: int = 0

    @property
    def calibration_capped(self) -> bool:
        """Whether the kept calibration round is the cap (validation loss still falling there:
        raise ``calib_rounds``)."""
        return self.calib_cap > 0 and self.calib_rounds == self.calib_cap

    def weights(self, calibrated: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """The whole model as one affine map of the summed n-gram features:
        (W (d, n_out), c (n_out,))."""
        W = self.reduction.A @ self.coef
        c = self.reduction.b @ self.coef + self.intercept
        if calibrated and self.complement is not None and self.calib_coef is not None:
            W = W + self.complement.A @ self.calib_coef
            c = c + self.complement.b @ self.calib_coef + self.calib_intercept
        return W, c

    def decision_function(self, X: np.ndarray, calibrated: bool = True) -> np.ndarray:
        W, c = self.weights(calibrated)
        return np.asarray(X, dtype=np.float64) @ W + c

    def predict_proba(self, X: np.ndarray, calibrated: bool = True) -> np.ndarray:
        return _proba(self.decision_function(X, calibrated), self.n_classes)

    def predict(self, X: np.ndarray, calibrated: bool = True) -> np.ndarray:
        return self.predict_proba(X, calibrated).argmax(1)

    def ngram_contributions(
        self, centred_embeddings: np.ndarray, target: int = 1, calibrated: bool = True
    ) -> np.ndarray:
        """Each n-gram's contribution (n_texts,) to the score of class ``target``: its centred
        embedding times W (for more than two classes: that class's logit minus the mean logit)."""
        W, _ = self.weights(calibrated)
        if self.n_classes > 2:
            W = W[:, [target]] - W.mean(1, keepdims=True)
        return (np.asarray(centred_embeddings, dtype=np.float64) @ W)[:, 0]

    @property
    def n_parameters(self) -> int:
        """Weights of the affine map over summed n-gram features: W (d x n_out) + c (n_out)."""
        W, c = self.weights()
        return int(W.size + c.size)

    def n_parameters_deployed(self, n_ngrams: int) -> int:
        """Numbers a deployed MoleX stores to predict molecules whose n-grams are known: one
        contribution per n-gram text and output (the n-gram table) and the intercept. A molecule
        with a new n-gram also needs the LM and W to embed it (the cold start)."""
        _, c = self.weights()
        return int(n_ngrams * c.size + c.size)


def fit_molex(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_valid: np.ndarray,
    y_valid: np.ndarray,
    n_classes: int,
    n_components: int = 16,
    reduction: str = "sparse",
    sparse_alpha: float = 0.3,
    logreg_c: float = 1.0,
    calibrate: bool = True,
    complement_components: int = 32,
    calib_rounds: int = 200,
    calib_lr: float = 0.3,
    calib_ridge: float = 1.0,
    calib_patience: int = 20,
    seed: int = 0,
) -> MolexModel:
    """Fit MoleX on training features (validation features only steer calibration's early stop).

    Residual calibration: with F the training logits, each round fits a ridge regression of the
    training residuals (one-hot labels minus probabilities) on the complement features u and
    adds ``calib_lr`` times it to F (a gradient-boosting step with linear learners); the number
    of rounds with the lowest validation log-loss is kept (0 means calibration is switched off),
    ``calib_rounds`` is the cap and ``calib_patience`` rounds without a lower validation loss stop
    it (`MolexModel.calibration_capped` says whether the kept round is the cap).
    """
    from scipy.linalg import cho_factor, cho_solve
    from sklearn.linear_model import LogisticRegression

    y_train, y_valid = np.asarray(y_train, dtype=int), np.asarray(y_valid, dtype=int)
    red = fit_reduction(X_train, n_components, reduction, sparse_alpha, seed=seed)
    lr = LogisticRegression(C=logreg_c, max_iter=5000).fit(red.transform(X_train), y_train)
    model = MolexModel(red, lr.coef_.T.copy(), lr.intercept_.copy(), n_classes)
    if not calibrate:
        return model
    comp = _complement(np.asarray(X_train, dtype=np.float64), red, complement_components, seed)
    U_tr = np.column_stack([comp.transform(X_train), np.ones(len(X_train))])
    U_va = np.column_stack([comp.transform(X_valid), np.ones(len(X_valid))])
    F_tr, F_va = model.decision_function(X_train), model.decision_function(X_valid)
    T_tr = _targets(y_train, n_classes)
    gram = cho_factor(U_tr.T @ U_tr + calib_ridge * np.eye(U_tr.shape[1]))
    acc = np.zeros((U_tr.shape[1], F_tr.shape[1]))
    best_loss, best_round, best_acc = _log_loss(y_valid, _proba(F_va, n_classes)), 0, acc.copy()
    rows = [
        {
            "round": 0,
            "train_loss": _log_loss(y_train, _proba(F_tr, n_classes)),
            "valid_loss": best_loss,
        }
    ]
    for r in range(1, calib_rounds + 1):
        residual = T_tr - (
            _proba(F_tr, n_classes)[:, 1:] if n_classes == 2 else _proba(F_tr, n_classes)
        )
        step = calib_lr * cho_solve(gram, U_tr.T @ residual)
        acc += step
        F_tr, F_va = F_tr + U_tr @ step, F_va + U_va @ step
        valid_loss = _log_loss(y_valid, _proba(F_va, n_classes))
        rows.append(
            {
                "round": r,
                "train_loss": _log_loss(y_train, _proba(F_tr, n_classes)),
                "valid_loss": valid_loss,
            }
        )
        if valid_loss < best_loss - 1e-9:
            best_loss, best_round, best_acc = valid_loss, r, acc.copy()
        elif r - best_round >= calib_patience:
            break
    model.complement = comp
    model.calib_coef, model.calib_intercept = best_acc[:-1], best_acc[-1]
    model.history, model.calib_rounds = pd.DataFrame(rows), best_round
    model.calib_cap = calib_rounds
    return model


def log_loss(y: np.ndarray, proba: np.ndarray) -> float:
    """Mean negative log-probability of the true class, (n,) labels against (n, n_classes)
    probabilities (clipped at 1e-12): the score every choice on a validation part minimises."""
    y = np.asarray(y, dtype=int)
    return _log_loss(y, np.asarray(proba, dtype=float))


def classification_scores(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Accuracy (argmax) and ROC-AUC (binary; macro one-vs-rest for more classes) of
    (n, n_classes) probabilities."""
    from sklearn.metrics import roc_auc_score

    y, proba = np.asarray(y, dtype=int), np.asarray(proba, dtype=float)
    acc = float(np.mean(proba.argmax(1) == y))
    if len(np.unique(y)) < proba.shape[1]:
        return {"accuracy": acc, "roc_auc": float("nan")}
    auc = (
        roc_auc_score(y, proba[:, 1])
        if proba.shape[1] == 2
        else roc_auc_score(y, proba, multi_class="ovr", average="macro")
    )
    return {"accuracy": acc, "roc_auc": float(auc)}
