"""FreeSolv's gradient-boosting baseline (04_moltc §5), settings chosen on validation only.

Random 80/10/10 splits of seeds 0-2 (`molkit.data.pairs.make_pair_split`), the features of
`molkit.methods.moltc.gbm_features` (Morgan counts r2 of both molecules + RDKit 2-D descriptors),
LightGBM with lr 0.03, <= 3,000 trees and early stopping after 200 rounds on validation RMSE; a grid
over leaves, minimum pairs per leaf and the share of features per tree. Prints one JSON line per
setting (mean validation and test RMSE over the seeds, test RMSE per seed) and the setting with the
lowest validation RMSE. Run alone: ``MOLKIT_DATA_MIRROR=../shared/data .venv/bin/python
scripts/freesolv_gbm_search.py`` (about a minute on 2 cores).
"""

import itertools
import json
import time

import numpy as np

from molkit.data.pairs import make_pair_split
from molkit.methods import moltc
from molkit.methods.baselines import fit_gradient_boosting


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def main() -> None:
    settings = moltc.Settings()
    task = moltc.TASKS["freesolv-pairs"]
    df = moltc.load_pairs("freesolv-pairs")
    x, y = moltc.gbm_features(df, task, settings), df[task.target].to_numpy(dtype=float)
    splits = [make_pair_split(df, "random", seed=seed) for seed in (0, 1, 2)]
    rows = []
    for leaves, min_child, colsample in itertools.product((7, 15, 31), (3, 5, 10), (0.1, 0.3)):
        start, valid, test = time.perf_counter(), [], []
        for split in splits:
            tr, va, te = split["train"], split["valid"], split["test"]
            model = fit_gradient_boosting(
                x[tr], y[tr], x[va], y[va], "regression", max_iter=3000, learning_rate=0.03,
                num_leaves=leaves, min_child_samples=min_child, colsample=colsample,
                patience=200,
            )  # fmt: skip
            valid.append(rmse(model.predict(x[va]), y[va]))
            test.append(rmse(model.predict(x[te]), y[te]))
        row = {
            "leaves": leaves, "min_child": min_child, "colsample": colsample,
            "valid_rmse": round(float(np.mean(valid)), 3),
            "test_rmse": round(float(np.mean(test)), 3),
            "test_rmse_per_seed": [round(v, 3) for v in test],
            "seconds": round(time.perf_counter() - start, 1),
        }  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("lowest validation RMSE:", json.dumps(min(rows, key=lambda r: r["valid_rmse"])))


if __name__ == "__main__":
    main()
