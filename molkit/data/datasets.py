"""Dataset registry and loaders.

Every loader returns a :class:`pandas.DataFrame` in one schema per task kind, with the metadata in
``df.attrs`` (``name``, ``kind``, ``task``, ``targets``, ``citation``, ``licence``, ``files``,
``invalid``).

* ``property`` (single molecule): ``smiles`` (RDKit-canonical), ``smiles_raw`` (as in the file; atom
  order of explanation ground truth refers to it), one float column per target (NaN = missing
  label), ``split`` where the upstream file defines one, plus dataset-specific extra columns.
* ``text`` (molecule-text pairs): ``id``, ``smiles``, ``smiles_raw``, ``text``, ``split``.
* ``pair`` (molecule pairs): ``smiles_1``, ``smiles_2`` (canonical), ``smiles_raw_1``,
  ``smiles_raw_2``, ``id_1``, ``id_2``, target column(s), ``split`` where upstream defines one,
  extra context columns (e.g. ``temperature``).

Invalid SMILES are never dropped silently: rows that RDKit cannot parse are removed and reported
(count, examples, reason) in a warning and in ``df.attrs["invalid"]``; ``on_invalid="keep"`` keeps
them with ``smiles = None`` and ``on_invalid="raise"`` stops.

A path to a CSV file of your own works wherever a name does (`load_dataset`, `get_spec`): it is
read into the same schema by `molkit.data.user_csv`, which explains every row it drops.
"""

from __future__ import annotations

import difflib
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from molkit.data.registry import fetch_file, registered_files

MOLECULENET_CITATION = (
    "Wu, Z. et al. MoleculeNet: a benchmark for molecular machine learning. "
    "Chem. Sci. 9, 513-530 (2018)."
)
TU_CITATION = (
    "Debnath, A. K. et al. J. Med. Chem. 34, 786-797 (1991) (MUTAG); "
    "Helma, C. et al. Bioinformatics 17, 107-108 (2001) (PTC); "
    "group annotations: Lamole (linzehui19/Lamole)."
)
CHEBI20_CITATION = (
    "Edwards, C., Zhai, C., Ji, H. Text2Mol. EMNLP 2021; "
    "Edwards, C. et al. Translation between molecules and natural language (MolT5). EMNLP 2022."
)
DDI_CITATION = (
    "Zitnik, M. et al. BioSNAP (ChCh-Miner), 2018; "
    "Zhang, W. et al. BMC Bioinformatics 18, 18 (2017) (ZhangDDI); "
    "splits as used by MIRACLE (Wang, Y. et al. WWW 2021)."
)


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: files, task kind, targets and provenance."""

    name: str
    kind: str  # "property" | "text" | "pair"
    task: str  # "classification" | "regression" | "generation"
    files: tuple[str, ...]
    reader: Callable[[DatasetSpec], pd.DataFrame]
    targets: tuple[str, ...] = ()
    description: str = ""
    citation: str = ""
    licence: str = ""
    smiles_columns: tuple[str, ...] = ("smiles",)
    extra: dict = field(default_factory=dict)


class UnknownDatasetError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0])


# ---------------------------------------------------------------- readers (file -> raw frame)


def _read_moleculenet(spec: DatasetSpec) -> pd.DataFrame:
    df = pd.read_csv(fetch_file(spec.files[0]))
    targets = spec.targets or tuple(c for c in df.columns if c != "smiles")
    df = df.rename(columns={"smiles": "smiles_raw"})
    for t in targets:
        df[t] = pd.to_numeric(df[t], errors="coerce").astype(float)
    return df[["smiles_raw", *targets]]


def _read_tu(spec: DatasetSpec) -> pd.DataFrame:
    import ast

    df = pd.read_csv(fetch_file(spec.files[0]))
    out = pd.DataFrame(
        {
            "smiles_raw": df["SMILES"],
            "label": df["LABEL"].astype(float),
            "group_selfies": df["GROUP SELFIES"],
            "group_index": df["GROUP INDEX"].map(ast.literal_eval),
            "group_label": df["GROUP LABEL"].map(ast.literal_eval),
            "total_label": df["TOTAL LABEL"].map(ast.literal_eval),
        }
    )
    return out


def _read_liver(spec: DatasetSpec) -> pd.DataFrame:
    df = pd.read_csv(fetch_file(spec.files[0]))
    attributions = np.load(fetch_file(spec.files[1]), allow_pickle=True)[
        "attributions"
    ]  # pinned, hash-checked
    if len(attributions) != len(df):
        raise ValueError(f"Liver attributions have {len(attributions)} rows, Liver.csv {len(df)}")
    alerts = [c for c in df.columns if c.startswith("Alert ")]
    out = pd.DataFrame(
        {
            "smiles_raw": df["SMILES"],
            "name": df["Drug Name"],
            "hepatotoxicity_class": df["Hepatotoxicity Class"].astype(int),
            "label": df["label"].astype(float),
            "summary": df["LiverTox Summary Statement"],
            "split": df["SPLIT"].str.strip().str.lower(),
        }
    )
    out["n_alerts"] = df[alerts].sum(axis=1).astype(int)
    out["node_atts"] = [np.asarray(a["node_atts"], dtype=np.int8) for a in attributions]
    return out


def _read_chebi20(spec: DatasetSpec) -> pd.DataFrame:
    frames = []
    for key in spec.files:
        split = key.rsplit("/", 1)[1].removesuffix(".txt")
        df = pd.read_csv(
            fetch_file(key), sep="\t", quoting=3, dtype={"CID": str}, keep_default_na=False
        )
        df = df.rename(columns={"CID": "id", "SMILES": "smiles_raw", "description": "text"})
        df["split"] = {"validation": "valid"}.get(split, split)
        frames.append(df[["id", "smiles_raw", "text", "split"]])
    return pd.concat(frames, ignore_index=True)


def _read_molt5_outputs(spec: DatasetSpec) -> pd.DataFrame:
    df = pd.read_csv(fetch_file(spec.files[0]), sep="\t", quoting=3, keep_default_na=False)
    if spec.extra["direction"] == "mol2cap":
        df.columns = ["smiles_raw", "reference", "prediction"]
    else:
        df.columns = ["text", "reference", "prediction"]
        df["smiles_raw"] = df["reference"]
    return df


def _read_ddi(spec: DatasetSpec) -> pd.DataFrame:
    frames = []
    for key in spec.files:
        split = key.rsplit("_", 1)[1].removesuffix(".csv")
        df = pd.read_csv(fetch_file(key))
        df = df.rename(
            columns={
                "drugbank_id_1": "id_1",
                "drugbank_id_2": "id_2",
                "smiles_1": "smiles_raw_1",
                "smiles_2": "smiles_raw_2",
            }
        )
        df["split"] = split
        frames.append(df[["id_1", "id_2", "smiles_raw_1", "smiles_raw_2", "label", "split"]])
    out = pd.concat(frames, ignore_index=True)
    out["label"] = out["label"].astype(float)
    return out


def _read_combisolu(spec: DatasetSpec) -> pd.DataFrame:
    df = pd.read_csv(fetch_file(spec.files[0]))
    return pd.DataFrame(
        {
            "smiles_raw_1": df["solute_smiles"],
            "smiles_raw_2": df["solvent_smiles"],
            "id_1": df["solute_name"],
            "id_2": df["solvent_name"],
            "temperature": df["temperature"].astype(float),
            "logS": pd.to_numeric(df["experimental_logS [mol/L]"], errors="coerce"),
            "logS_warning": df["logS_warning"],
        }
    )


def _read_chromophore(spec: DatasetSpec) -> pd.DataFrame:
    df = pd.read_csv(fetch_file(spec.files[0]))
    target = spec.targets[0]
    out = pd.DataFrame(
        {
            "smiles_raw_1": df["Chromophore"],
            "smiles_raw_2": df["Solvent"],
            target: df.iloc[:, 2].astype(float),
        }
    )
    out["id_1"] = out["smiles_raw_1"]
    out["id_2"] = out["smiles_raw_2"]
    return out


def _read_freesolv_pairs(spec: DatasetSpec) -> pd.DataFrame:
    df = pd.read_csv(fetch_file(spec.files[0]))
    return pd.DataFrame(
        {
            "smiles_raw_1": df["smiles"],
            "smiles_raw_2": "O",
            "id_1": df["smiles"],
            "id_2": "water",
            "freesolv": df["freesolv"].astype(float),
        }
    )


# ---------------------------------------------------------------- the registry

_MOLNET = {
    # name: (targets, task, description)
    "bbbp": (("bbbp",), "classification", "Blood-brain barrier penetration (binary)."),
    "bace": (("bace",), "classification", "BACE-1 inhibition (binary)."),
    "clintox": (
        ("FDA_APPROVED", "CT_TOX"),
        "classification",
        "FDA approval and clinical-trial toxicity (2 tasks).",
    ),
    "sider": (None, "classification", "Side-effect resource: 27 system-organ-class tasks."),
    "tox21": (None, "classification", "Tox21 challenge: 12 toxicity assays (missing labels)."),
    "hiv": (("hiv",), "classification", "HIV replication inhibition (binary)."),
    "esol": (("esol",), "regression", "Aqueous solubility (log mol/L)."),
    "freesolv": (("freesolv",), "regression", "Hydration free energy (kcal/mol)."),
    "lipo": (("lipo",), "regression", "Octanol/water distribution coefficient logD at pH 7.4."),
}


def _molnet_targets(name: str) -> tuple[str, ...]:
    targets = _MOLNET[name][0]
    if targets is not None:
        return targets
    cols = pd.read_csv(fetch_file(f"moleculenet/{name}.csv"), nrows=0).columns
    return tuple(c for c in cols if c != "smiles")


_SPECS: dict[str, DatasetSpec] = {}


def _register(spec: DatasetSpec) -> None:
    _SPECS[spec.name] = spec


for _name, (_targets, _task, _desc) in _MOLNET.items():
    _register(
        DatasetSpec(
            name=_name,
            kind="property",
            task=_task,
            files=(f"moleculenet/{_name}.csv",),
            reader=_read_moleculenet,
            targets=_targets or (),
            description=_desc,
            citation=MOLECULENET_CITATION,
            licence="MoleculeNet data (chemprop CSV format, via cxy0206/ChemSpaceAlign, MIT).",
        )
    )

for _name in ("MUTAG", "PTC_FR", "PTC_FM", "PTC_MM", "PTC_MR"):
    _register(
        DatasetSpec(
            name=_name.lower(),
            kind="property",
            task="classification",
            files=(f"explain/{_name}.csv",),
            reader=_read_tu,
            targets=("label",),
            description=f"{_name}: mutagenicity / carcinogenicity with Group-SELFIES and "
            "ground-truth group types.",
            citation=TU_CITATION,
            licence="TU datasets as preprocessed by linzehui19/Lamole "
            "(repository has no licence file).",
        )
    )

_register(
    DatasetSpec(
        name="liver",
        kind="property",
        task="classification",
        files=("explain/Liver.csv", "explain/Liver_attributions.npz"),
        reader=_read_liver,
        targets=("label",),
        description="LiverTox hepatotoxicity (3 classes: label 0/1/2 = class -1/0/1) "
        "with 12 structural alerts and atom-level ground-truth attributions "
        "(node_atts, RDKit order of smiles_raw).",
        citation="LiverTox (NIH); Lamole (linzehui19/Lamole).",
        licence="LiverTox is public domain (NIH); preprocessing repository has no licence file.",
    )
)
_register(
    DatasetSpec(
        name="chebi20",
        kind="text",
        task="generation",
        files=("chebi20/validation.txt", "chebi20/test.txt"),
        reader=_read_chebi20,
        description="ChEBI-20 molecule-caption pairs: "
        "upstream validation (3,301) and test (3,300) splits.",
        citation=CHEBI20_CITATION,
        licence="CC BY 4.0 (ChEBI).",
    )
)
_register(
    DatasetSpec(
        name="chebi20-full",
        kind="text",
        task="generation",
        files=("chebi20/train.txt", "chebi20/validation.txt", "chebi20/test.txt"),
        reader=_read_chebi20,
        description="ChEBI-20 with the 26,407-pair train split "
        "(upstream only: needs the internet once).",
        citation=CHEBI20_CITATION,
        licence="CC BY 4.0 (ChEBI).",
    )
)
for _direction, _file in (("mol2cap", "smiles2caption"), ("cap2mol", "caption2smiles")):
    _register(
        DatasetSpec(
            name=f"molt5-base-{_direction}",
            kind="text",
            task="generation",
            files=(f"chebi20/molt5-base-{_file}.txt",),
            reader=_read_molt5_outputs,
            description=f"MolT5-base outputs on the ChEBI-20 test split ({_direction}); "
            "a published peer's predictions.",
            citation=CHEBI20_CITATION,
            licence="blender-nlp/MolT5, BSD-3-Clause.",
            extra={"direction": _direction},
        )
    )
for _name, _prefix, _splits in (
    ("chchminer", "ChChMiner", ("train", "valid", "test")),
    ("zhangddi", "ZhangDDI", ("valid", "test")),
):
    _register(
        DatasetSpec(
            name=_name,
            kind="pair",
            task="classification",
            files=tuple(f"ddi/{_prefix}_{s}.csv" for s in _splits),
            reader=_read_ddi,
            targets=("label",),
            description=f"{_prefix} drug-drug interaction pairs "
            "(1 = interacts, 0 = sampled negative), upstream splits "
            + (
                "train/valid/test."
                if _name == "chchminer"
                else "valid/test (train is upstream only; valid and test overlap)."
            ),
            citation=DDI_CITATION,
            licence="BioSNAP / DrugBank-derived pairs via isjakewong/MIRACLE.",
            smiles_columns=("smiles_1", "smiles_2"),
        )
    )
_register(
    DatasetSpec(
        name="combisolu",
        kind="pair",
        task="regression",
        files=("solvation/CombiSolu-Exp.csv",),
        reader=_read_combisolu,
        targets=("logS",),
        description="CombiSolu-Exp: experimental solubility logS (mol/L) "
        "of solute (1) in solvent (2) at a temperature (K).",
        citation="Vermeire, F. H., Chung, Y., Green, W. H. J. Am. Chem. Soc. 144, 10785 (2022).",
        licence="via cxy0206/ChemSpaceAlign (MIT).",
        smiles_columns=("smiles_1", "smiles_2"),
    )
)
_register(
    DatasetSpec(
        name="freesolv-pairs",
        kind="pair",
        task="regression",
        files=("moleculenet/freesolv.csv",),
        reader=_read_freesolv_pairs,
        targets=("freesolv",),
        description="FreeSolv hydration free energy (kcal/mol) as solute (1) - water (2) pairs.",
        citation=MOLECULENET_CITATION
        + " Mobley, D. L., Guthrie, J. P. J. Comput. Aided Mol. Des. 28, 711 (2014).",
        licence="FreeSolv (CC BY 4.0) via MoleculeNet.",
        smiles_columns=("smiles_1", "smiles_2"),
    )
)
for _name, _file, _target, _desc in (
    ("chromophore-abs", "chr_abs", "absorption_nm", "absorption maximum (nm)"),
    ("chromophore-emi", "chr_emi", "emission_nm", "emission maximum (nm)"),
    ("chromophore-life", "chr_life", "log_lifetime", "lifetime (natural log of ns, as upstream)"),
):
    _register(
        DatasetSpec(
            name=_name,
            kind="pair",
            task="regression",
            files=(f"chromophore/{_file}.csv",),
            reader=_read_chromophore,
            targets=(_target,),
            description=f"Chromophore (1) - solvent (2) {_desc}. "
            "Caveats: 'gas' solvents and solvent == chromophore "
            "(solid state) rows are reported as invalid / kept as in the data.",
            citation="Joung, J. F. et al. Sci. Data 7, 295 (2020); "
            "processed by CGIB (Lee, N. et al. ICML 2023).",
            licence="CC BY 4.0 per the data paper (unverified); CGIB repository MIT.",
            smiles_columns=("smiles_1", "smiles_2"),
        )
    )


def list_datasets() -> pd.DataFrame:
    """One row per registered dataset: name, kind, task, files, whether every file is mirrored."""
    files = registered_files()
    return pd.DataFrame(
        [
            {
                "name": s.name,
                "kind": s.kind,
                "task": s.task,
                "files": " ".join(s.files),
                "mirrored": all(files[f].mirrored for f in s.files),
                "description": s.description,
            }
            for s in _SPECS.values()
        ]
    )


def get_spec(
    name: str | os.PathLike,
    *,
    kind: str | None = None,
    task: str | None = None,
    targets: str | list[str] | tuple[str, ...] | None = None,
) -> DatasetSpec:
    """The registered :class:`DatasetSpec` called ``name`` (case-insensitive), or, for the path of
    a CSV file, one read from the file (`molkit.data.user_csv.csv_spec`: ``kind``, ``task`` and
    ``targets`` override what it infers)."""
    from molkit.data.user_csv import csv_spec, is_csv_path

    if is_csv_path(name):
        return csv_spec(name, kind=kind, task=task, targets=targets)
    _csv_only(name, kind=kind, task=task, targets=targets)
    key = name.strip().lower()
    if key not in _SPECS:
        close = difflib.get_close_matches(key, list(_SPECS), n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownDatasetError(
            f"unknown dataset {name!r}.{hint} "
            f"Registered: {', '.join(sorted(_SPECS))} (`molkit data list`); "
            "or give the path of a CSV file of your own (`molkit data check FILE`)."
        )
    return _SPECS[key]


def _csv_only(name: str, **options) -> None:
    given = [k for k, v in options.items() if v is not None]
    if given:
        raise ValueError(
            f"{', '.join(given)} apply to CSV files only; {name!r} is a registered dataset name"
        )


def _standardise_column(df: pd.DataFrame, raw: str, out: str, invalid: list[dict]) -> None:
    from molkit.chem import standardize_many

    values = df[raw].astype(str).tolist()
    unique = list(dict.fromkeys(values))
    canon, report = standardize_many(unique, progress=len(unique) > 5000)
    mapping = dict(zip(unique, canon, strict=True))
    df[out] = [mapping[v] for v in values]
    reasons = dict(zip(report["smiles"], report["reason"], strict=True)) if len(report) else {}
    for idx, v in zip(df.index, values, strict=True):
        if mapping[v] is None:
            invalid.append(
                {
                    "row": int(idx),
                    "column": raw,
                    "smiles": v,
                    "reason": reasons.get(v, "unparsable"),
                }
            )


def load_dataset(
    name: str | os.PathLike,
    on_invalid: str = "drop",
    *,
    kind: str | None = None,
    task: str | None = None,
    targets: str | list[str] | tuple[str, ...] | None = None,
    min_rows: int | None = None,
) -> pd.DataFrame:
    """Load a registered dataset, or a CSV file given by its path, as a DataFrame in its kind's
    schema (see the module docstring).

    ``on_invalid``: ``"drop"`` (default; dropped rows are reported in a warning and
    ``df.attrs["invalid"]``), ``"keep"`` (rows kept with ``smiles = None``) or ``"raise"``.
    For a CSV (`molkit.data.user_csv.load_csv`): ``kind``, ``task`` and ``targets`` override what
    is inferred from the file, ``min_rows`` (default `molkit.data.user_csv.MIN_ROWS`) is the fewest
    usable rows it must have; every problem is in ``df.attrs["report"]``, and `DataCheckError`
    lists them when one is fatal.
    """
    if on_invalid not in ("drop", "keep", "raise"):
        raise ValueError(f"on_invalid must be 'drop', 'keep' or 'raise', not {on_invalid!r}")
    from molkit.data.user_csv import MIN_ROWS, is_csv_path, load_csv

    if is_csv_path(name):
        return load_csv(
            name, kind=kind, task=task, targets=targets, on_invalid=on_invalid,
            min_rows=MIN_ROWS if min_rows is None else min_rows,
        )  # fmt: skip
    _csv_only(name, kind=kind, task=task, targets=targets, min_rows=min_rows)
    spec = get_spec(name)
    df = spec.reader(spec).reset_index(drop=True)
    invalid: list[dict] = []
    if spec.kind == "pair":
        _standardise_column(df, "smiles_raw_1", "smiles_1", invalid)
        _standardise_column(df, "smiles_raw_2", "smiles_2", invalid)
        smiles_cols = ["smiles_1", "smiles_2"]
    else:
        _standardise_column(df, "smiles_raw", "smiles", invalid)
        smiles_cols = ["smiles"]
    report = pd.DataFrame(invalid, columns=["row", "column", "smiles", "reason"])
    bad_rows = sorted(set(report["row"]))
    if bad_rows:
        examples = "; ".join(
            f"row {r.row} {r.smiles!r}: {r.reason}" for r in report.head(3).itertuples()
        )
        message = (
            f"{spec.name}: {len(bad_rows)} of {len(df)} rows "
            f"have SMILES that RDKit cannot parse ({examples})"
        )
        if on_invalid == "raise":
            raise ValueError(message + ". Pass on_invalid='drop' or 'keep' to load the rest.")
        if on_invalid == "drop":
            df = df.drop(index=bad_rows).reset_index(drop=True)
            warnings.warn(
                message + "; these rows were dropped (see df.attrs['invalid']).", stacklevel=2
            )
        else:
            warnings.warn(message + "; kept with smiles=None.", stacklevel=2)
    targets = spec.targets or (_molnet_targets(spec.name) if spec.name in _MOLNET else ())
    front = [c for c in ("id", "id_1", "id_2") if c in df.columns] + smiles_cols
    df = df[front + [c for c in df.columns if c not in front]]
    df.attrs.update(
        {
            "name": spec.name,
            "kind": spec.kind,
            "task": spec.task,
            "targets": list(targets),
            "description": spec.description,
            "citation": spec.citation,
            "licence": spec.licence,
            "files": list(spec.files),
            "invalid": report.to_dict("records"),
            "n_invalid_rows": len(bad_rows),
        }
    )
    return df


def citation(name: str) -> str:
    """Citation text of a registered dataset."""
    return get_spec(name).citation


def licence(name: str) -> str:
    """Licence text of a registered dataset."""
    return get_spec(name).licence
