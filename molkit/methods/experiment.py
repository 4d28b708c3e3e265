"""The contract every method shares: typed `Settings` per profile, `Results` with claim rows.

A method's ``experiment.py`` declares one frozen `Settings` subclass (its fields typed, one value
set per profile in ``PROFILES``) and one function per Practical section of its notebook, each taking
the settings and returning `Results`: tidy result rows, artefacts (tables, models, texts the
notebook shows) and `Claim` rows. The functions are pure: they never write the record. The notebook
records what they return (`molkit.record_results`), and ``molkit run`` gathers every notebook's
claims into ``papermill_runs/<profile>/CLAIMS.md``.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Toy(Settings):
...     n_train: int = 10
...     PROFILES = {"smoke": {"n_train": 2}, "default": {}, "full": {"n_train": 1000}}
>>> Toy.for_profile("smoke").with_overrides(n_train=None).n_train
2
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from molkit._profiles import PROFILES, check_profile

#: The profile names (one home: `molkit._profiles.PROFILES`).
PROFILE_NAMES = PROFILES
ROW_COLUMNS = ("dataset", "method", "metric", "value", "seed", "split", "note")
CLAIM_COLUMNS = (
    "paper",
    "claim",
    "paper_figure",
    "metric",
    "ours",
    "low",
    "high",
    "verdict",
    "n",
    "seeds",
    "paper_vs_ours",
    "kind",
    "gates",
    "detail",
)
#: The columns of `Results.claims_table`, what a notebook shows of each claim row.
SHOWN_CLAIM_COLUMNS = (
    "claim", "paper_figure", "ours", "low", "high", "verdict", "n", "seeds", "paper_vs_ours",
    "kind",
)  # fmt: skip
#: What a claim row compares: a learned arm against its trivial baseline (``gate``), a learned arm
#: against another model (``comparison``: judged only through `gated`), or a fact that involves
#: no learned arm's quality (``reference``: a data property, two fixed baselines).
CLAIM_KINDS = ("gate", "comparison", "reference")
#: How a claims CSV joins a comparison's gate claims in its ``gates`` column.
GATE_SEPARATOR = " || "

#: Verdicts, computed from a paired interval (never typed in markdown).
HOLDS = "holds"
CONTRADICTED = "contradicted"
UNDECIDED = "undecided"
#: A comparison left unjudged because one of its arms did not beat its trivial baseline (`gated`).
NOT_JUDGED = "not judged"


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """Base of a method's settings. A subclass adds typed fields with their defaults and a class
    attribute ``PROFILES = {"smoke": {...}, "default": {...}, "full": {...}}`` of the values that
    differ from those defaults. ``profile`` names the profile an instance came from."""

    profile: str = "default"
    seed: int = 0
    PROFILES: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.name != "profile"]

    @classmethod
    def for_profile(
        cls, profile: str, overrides: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> Settings:
        """The settings of ``profile`` (``smoke``, ``default`` or ``full``), with a notebook's
        parameters applied (`with_overrides`: a ``None`` value keeps the profile's). This is
        where a notebook's ``profile`` and ``seed`` enter, once: `molkit.setup` reads both from
        the settings."""
        check_profile(profile)
        values = dict(cls.PROFILES.get(profile, {}))
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise TypeError(f"{cls.__name__}.PROFILES[{profile!r}] sets unknown fields {unknown}")
        settings = cls(profile=profile, **values)._checked()
        if overrides or kwargs:
            return settings.with_overrides(overrides, **kwargs)
        return settings

    def with_overrides(self, overrides: Mapping[str, Any] | None = None, **kwargs: Any) -> Settings:
        """A copy with the given fields replaced; a ``None`` value keeps the profile's value (that
        is how a notebook parameter left at ``None`` reads). An unknown name is an error that lists
        the valid ones, raised before any work starts."""
        changes = {**(overrides or {}), **kwargs}
        valid = self.field_names()
        unknown = sorted(k for k in changes if k not in valid)
        if unknown:
            raise ValueError(
                f"{type(self).__name__} has no setting {', '.join(map(repr, unknown))}; "
                f"valid settings: {', '.join(valid)}"
            )
        hints = typing.get_type_hints(type(self))
        changes = {k: _coerce(v, hints.get(k)) for k, v in changes.items() if v is not None}
        return dataclasses.replace(self, **changes)._checked()

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def problems(self) -> list[str]:
        """The one validation hook: what is wrong with these values beyond their types (an
        unknown dataset, a size out of range, two settings that contradict each other), each
        problem a sentence naming the setting and the fix. A subclass extends the list;
        `for_profile` and `with_overrides` raise one ValueError listing them all."""
        return []

    def table(self, columns: int = 3):
        """The settings as one compact table (``columns`` setting / value pairs per row), what a
        notebook shows instead of a one-line repr."""
        import pandas as pd

        items = [(k, _show(v)) for k, v in self.as_dict().items()]
        rows = -(-len(items) // columns)
        cells: dict[str, list[str]] = {}
        for c in range(columns):
            chunk = items[c * rows : (c + 1) * rows] + [("", "")] * rows
            cells[f"setting {c + 1}"] = [k for k, _ in chunk[:rows]]
            cells[f"value {c + 1}"] = [v for _, v in chunk[:rows]]
        return pd.DataFrame(cells, index=[""] * rows)

    def _repr_html_(self) -> str:
        return self.table().to_html()

    def _checked(self) -> Settings:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not _matches(value, hints.get(f.name, Any)):
                raise TypeError(
                    f"{type(self).__name__}.{f.name} must be {_type_name(hints.get(f.name))}, "
                    f"not {value!r} ({type(value).__name__})"
                )
        problems = self.problems()
        if problems:
            raise ValueError(
                f"{type(self).__name__} ({self.profile} profile): " + "; ".join(problems)
            )
        return self


def _show(value: Any) -> str:
    """A setting's value as a table shows it: sequences joined, floats short."""
    if isinstance(value, tuple):
        return ", ".join(_show(v) for v in value) or "(none)"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _coerce(value: Any, hint: Any = None) -> Any:
    """A notebook parameter as its field wants it: a list becomes a tuple; for a tuple field, a
    string becomes a tuple too (``'["my.csv", "bbbp"]'`` as JSON, as ``papermill -p`` passes a
    list written on the command line, else the one value ``"my.csv"``)."""
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, str) and _wants_tuple(hint):
        text = value.strip()
        if text.startswith("["):
            import json

            try:
                return tuple(json.loads(text))
            except json.JSONDecodeError as exc:
                raise ValueError(f"cannot read {value!r} as a list: {exc}") from None
        return (value,)
    return value


def _wants_tuple(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_wants_tuple(h) for h in typing.get_args(hint))
    return origin is tuple


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _matches(value: Any, hint: Any) -> bool:
    """A light run-time check of a value against a field's annotation (str, int, float, bool,
    tuple[...], X | None, Literal)."""
    if hint is Any or hint is None:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return len(args) == len(value) and all(
            _matches(v, a) for v, a in zip(value, args, strict=True)
        )
    if origin is not None:
        return isinstance(value, origin)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint) if isinstance(hint, type) else True


# --------------------------------------------------------------------------- claims


@dataclass(frozen=True)
class Claim:
    """One of a paper's claims, tested at this run's scale.

    ``ours`` is our measured difference (e.g. the method's ROC-AUC minus the baseline's, on the
    same test items), ``low`` / ``high`` its paired-bootstrap interval, ``n`` the test items it
    rests on, ``verdict`` computed from the interval by `verdict_from_interval`. ``seeds`` and
    ``seeds_baseline``: the training seeds of each side the interval resamples (1: one training
    run, or a model that is not trained). ``paper_value``: the paper's size of the same
    difference in ``metric``'s units, where the paper states one (NaN otherwise);
    ``paper_position`` says whether it lies inside, above or below our interval. ``kind``:
    `CLAIM_KINDS`; ``gates``: the gate claims a comparison passed through (`gated`)."""

    paper: str
    claim: str
    paper_figure: str
    metric: str
    ours: float
    low: float
    high: float
    verdict: str
    n: int
    detail: str = ""
    seeds: int = 1
    seeds_baseline: int = 1
    paper_value: float = math.nan
    kind: str = "reference"
    gates: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in CLAIM_KINDS:
            raise ValueError(f"claim kind must be one of {CLAIM_KINDS}, not {self.kind!r}")

    @property
    def paper_position(self) -> str:
        """``inside``, ``above`` or ``below`` our interval; ``""`` without a paper size or an
        interval."""
        if not all(math.isfinite(v) for v in (self.paper_value, self.low, self.high)):
            return ""
        if self.paper_value > self.high:
            return "above"
        return "below" if self.paper_value < self.low else "inside"

    @property
    def paper_vs_ours(self) -> str:
        """The paper's size against our interval, as a ledger shows it ("+7.0 above")."""
        position = self.paper_position
        return f"{self.paper_value:+.3g} {position}" if position else ""

    @property
    def seeds_text(self) -> str:
        """Training seeds as a ledger shows them: ``3``, or ``3 / 1`` when the two sides differ."""
        if self.seeds == self.seeds_baseline:
            return str(self.seeds)
        return f"{self.seeds} / {self.seeds_baseline}"

    @property
    def verdict_text(self) -> str:
        """The verdict with the difference, interval, test items and seeds; a withheld comparison
        names the gates that failed instead of printing the NaNs that stand for its difference."""
        if self.verdict == NOT_JUDGED:
            reasons = self.detail.removeprefix("not judged: ") or "an arm failed its gate"
            return f"{NOT_JUDGED} ({reasons})"
        interval = f"[{self.low:+.3f}, {self.high:+.3f}]"
        return (
            f"{self.verdict} ({self.metric} {self.ours:+.3f}, 95 % {interval}, n = {self.n}, "
            f"training seeds {self.seeds_text})"
        )

    @property
    def sentence(self) -> str:
        """The claim as one sentence of a Discussion: the claim, then `verdict_text`."""
        return f"{self.claim}: {self.verdict_text}"

    def as_row(self) -> dict[str, Any]:
        row = {c: getattr(self, c) for c in CLAIM_COLUMNS if c not in ("seeds", "gates")}
        row["seeds"] = self.seeds_text
        row["paper_vs_ours"] = self.paper_vs_ours
        row["gates"] = GATE_SEPARATOR.join(self.gates)
        return {c: row[c] for c in CLAIM_COLUMNS}


def verdict_from_interval(low: float, high: float, higher_is_better: bool = True) -> str:
    """``holds`` when the interval of (method - baseline) excludes 0 on the claimed side,
    ``contradicted`` when it excludes 0 on the other side, else ``undecided``."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return UNDECIDED
    better, worse = (low > 0, high < 0) if higher_is_better else (high < 0, low > 0)
    return HOLDS if better else CONTRADICTED if worse else UNDECIDED


def paired_claim(
    paper: str,
    claim: str,
    paper_figure: str,
    y_true: Sequence[float],
    pred_method: Sequence[float],
    pred_baseline: Sequence[float],
    metric: Callable[[np.ndarray, np.ndarray], float],
    metric_name: str,
    higher_is_better: bool = True,
    n_boot: int = 2000,
    seed: int = 0,
    detail: str = "",
    groups: Sequence | None = None,
    paper_value: float = math.nan,
    kind: str = "reference",
) -> Claim:
    """A `Claim` that the method beats the baseline on ``metric``, judged by a paired bootstrap over
    the same test items (`molkit.eval.paired_bootstrap`; ``groups``: stratified by group, e.g. by
    split, the metric averaged over groups). ``pred_method`` / ``pred_baseline`` hold one row per
    training seed where an arm was trained with several, (n_seeds, n_items): the bootstrap then
    resamples the seeds too, and the claim records how many. ``paper_value``: the paper's size of
    the difference, in the metric's units. ``kind``: ``"gate"`` for a learned arm against its
    trivial baseline; a comparison between models goes through `gated`."""
    from molkit.eval.metrics import paired_bootstrap

    boot = paired_bootstrap(
        y_true, pred_method, pred_baseline, metric, n_boot=n_boot, seed=seed, groups=groups
    )
    return Claim(
        paper=paper,
        claim=claim,
        paper_figure=paper_figure,
        metric=metric_name,
        ours=boot["diff"],
        low=boot["low"],
        high=boot["high"],
        verdict=verdict_from_interval(boot["low"], boot["high"], higher_is_better),
        n=len(np.asarray(y_true).ravel()),
        detail=detail,
        seeds=boot["seeds_a"],
        seeds_baseline=boot["seeds_b"],
        paper_value=paper_value,
        kind=kind,
    )


def verdict_summary(claims: Sequence[Claim]) -> str:
    """One sentence counting the verdicts of a notebook's claim rows per kind, for a Discussion
    that reads the claims table instead of repeating it: "6 claim rows: 3 gates (2 hold, 1
    undecided); 2 comparisons (1 holds, 1 not judged); 1 reference (1 contradicted)"."""
    parts = []
    for kind in CLAIM_KINDS:
        verdicts = [c.verdict for c in claims if c.kind == kind]
        if not verdicts:
            continue
        counts = {v: verdicts.count(v) for v in dict.fromkeys(
            [HOLDS, CONTRADICTED, UNDECIDED, NOT_JUDGED, *verdicts])}  # fmt: skip
        said = ", ".join(
            f"{n} {'hold' if v == HOLDS and n > 1 else v}" for v, n in counts.items() if n
        )
        parts.append(f"{_count(len(verdicts), kind)} ({said})")
    if not parts:
        return "no claim rows"
    return f"{_count(len(claims), 'claim row')}: " + "; ".join(parts)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def gated(comparison: Claim, gates: Sequence[Claim]) -> Claim:
    """A comparison between two models, reported only when each passed its gate.

    ``gates`` are the claims that each arm beats its trivial baseline on the same test items (the
    training mean, chance, a no-chemistry prior). When every gate holds, ``comparison`` is returned
    with "every arm passes its gate" appended to its detail; otherwise its difference and interval
    are withheld (NaN), its verdict is `NOT_JUDGED` and the detail names each gate that failed and
    how, so a ledger never prints "helps" between models that learned nothing."""
    failed = [g for g in gates if g.verdict != HOLDS]
    if not gates:
        raise ValueError("gated needs at least one gate claim")
    marked = dataclasses.replace(comparison, kind="comparison", gates=tuple(g.claim for g in gates))
    if not failed:
        return dataclasses.replace(
            marked, detail=f"{comparison.detail}; every arm passes its gate".lstrip("; ")
        )
    reasons = "; ".join(f"gate {g.verdict}: {g.claim}" for g in failed)
    nan = math.nan
    return dataclasses.replace(
        marked, ours=nan, low=nan, high=nan, verdict=NOT_JUDGED, detail=f"not judged: {reasons}"
    )


# --------------------------------------------------------------------------- results


@dataclass
class Results:
    """What an experiment function returns: tidy ``rows`` (dicts with `ROW_COLUMNS`), named
    ``artefacts`` for the notebook to show, and ``claims``. ``a + b`` joins two results."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    artefacts: dict[str, Any] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)

    def add_row(
        self,
        dataset: str,
        method: str,
        metric: str,
        value: float,
        seed: int = 0,
        split: str = "",
        note: str = "",
    ) -> None:
        self.rows.append(
            {
                "dataset": dataset,
                "method": method,
                "metric": metric,
                "value": float(value),
                "seed": int(seed),
                "split": split,
                "note": note,
            }
        )

    def add_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            unknown = set(row) - set(ROW_COLUMNS)
            if unknown:
                raise ValueError(
                    f"result rows take the columns {ROW_COLUMNS}, not {sorted(unknown)}"
                )
            self.add_row(**row)

    def frame(self):
        """The rows as a DataFrame (columns `ROW_COLUMNS`)."""
        import pandas as pd

        return pd.DataFrame(self.rows, columns=list(ROW_COLUMNS))

    def claims_frame(self):
        import pandas as pd

        return pd.DataFrame([c.as_row() for c in self.claims], columns=list(CLAIM_COLUMNS))

    def claims_table(self):
        """The claims as a notebook's Results section shows them (`SHOWN_CLAIM_COLUMNS`, numbers to
        3 decimals): the claim, the paper's figure, our difference and its interval, the verdict,
        the test items and training seeds, where the paper's size lies and the row's kind. The
        gates and details stay in the claims CSV and CLAIMS.md. Show it with `molkit.show_table`,
        which keeps each claim whole."""
        return self.claims_frame()[list(SHOWN_CLAIM_COLUMNS)].round(
            {"ours": 3, "low": 3, "high": 3}
        )

    def verdict_summary(self) -> str:
        """`verdict_summary` of the claims: their verdicts counted per kind, in one sentence."""
        return verdict_summary(self.claims)

    def __add__(self, other: Results) -> Results:
        return Results(
            rows=self.rows + other.rows,
            artefacts={**self.artefacts, **other.artefacts},
            claims=self.claims + other.claims,
        )


def ledger_problems(claims) -> list[str]:
    """What makes a notebook's claim rows (a claims CSV as a DataFrame, or `Claim` objects)
    untrustworthy, one sentence each: an unknown kind; a comparison that did not go through
    `gated`; a comparison judged (holds / contradicted) although one of its gates did not hold,
    or whose gate is not among the rows; a verdict that its interval does not give; a row without
    test items or training seeds. Empty when the ledger is sound."""
    import pandas as pd

    frame = (
        pd.DataFrame([c.as_row() for c in claims])
        if not isinstance(claims, pd.DataFrame)
        else claims
    )
    problems = []
    verdicts = {}
    for row in frame.to_dict("records"):
        verdicts.setdefault(row["claim"], []).append(row["verdict"])
    for row in frame.to_dict("records"):
        name = f"claim {row['claim']!r}"
        kind = row.get("kind", "")
        if kind not in CLAIM_KINDS:
            problems.append(f"{name}: kind {kind!r} is not one of {CLAIM_KINDS}")
        text = row.get("gates", "")
        gates = [g for g in (text if isinstance(text, str) else "").split(GATE_SEPARATOR) if g]
        if kind == "comparison" and not gates:
            problems.append(f"{name}: a comparison that did not go through gated()")
        judged = row["verdict"] in (HOLDS, CONTRADICTED)
        for gate in gates:
            if gate not in verdicts:
                problems.append(f"{name}: its gate {gate!r} is not among the claim rows")
            elif judged and any(v != HOLDS for v in verdicts[gate]):
                problems.append(f"{name}: judged {row['verdict']} although gate {gate!r} failed")
        low, high = float(row["low"]), float(row["high"])
        if row["verdict"] in (HOLDS, CONTRADICTED, UNDECIDED) and math.isfinite(low):
            expected = {
                verdict_from_interval(low, high, True),
                verdict_from_interval(low, high, False),
            }
            if row["verdict"] not in expected:
                problems.append(f"{name}: verdict {row['verdict']} but interval [{low}, {high}]")
        if int(row["n"]) < 1:
            problems.append(f"{name}: rests on no test item (n = {row['n']})")
        if not str(row.get("seeds", "1")).strip():
            problems.append(f"{name}: no training-seed count")
    return problems
