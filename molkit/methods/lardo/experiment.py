"""The 03_lardo notebook's experiments: one function per Practical section, each taking the
settings first and returning a typed `molkit.methods.experiment.Results` (pure: nothing is
recorded here; the notebook records what they return, and `molkit.methods.lardo.claims` turns
them into claim rows).

- `stage1_properties` (`Stage1`): which properties the LLM names per dataset, mapped to RDKit
  descriptors, and the constrained ranking.
- `generation_speed` (`Speed`): tokens per second, one prompt at a time vs batched; the shipped
  responses' cost and what the ``full`` profile asks of the LLM.
- `pretrain_and_finetune` (`Benchmark`): the descriptions, graph-text pre-training, the
  baselines, fine-tuning and the frozen probes on the official split (several training seeds)
  and on balanced scaffold splits.
- `text_information` (`Retrieval`): what each text source tells about its molecule: held-out
  graph -> text retrieval after pre-training on it.
- `calibration` (`Calibration`): what the descriptions claim that RDKit can check, per claim.
- `reader_view` (`ReaderView`): a few molecules as a reader would check them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from molkit.data import final_scoring
from molkit.methods.experiment import Results
from molkit.methods.lardo.descriptions import (
    SPEED_NEW_TOKENS,
    Descriptions,
    describe_molecules,
    description_pool,
    example_descriptions,
    response_cache,
    stage1_free,
    stage1_ranked,
    throughput_benchmark,
)
from molkit.methods.lardo.factcheck import check_descriptions, extract_claims
from molkit.methods.lardo.method import (
    VARIANTS,
    PropertyMap,
    prompt_descriptors,
    stage2_prompt,
    value_text,
)
from molkit.methods.lardo.protocol import (
    RETRIEVAL_SOURCES,
    TEST_SPLITS,
    EmbeddingMap,
    RetrievalUnit,
    UnitPredictions,
    official_split,
    protocol_encoders,
    protocol_units,
    retrieval_unit,
    text_embeddings,
    train_units,
)
from molkit.methods.lardo.responses import (
    ResponseBudget,
    ShippedCost,
    response_budget,
    shipped_cost,
)
from molkit.methods.lardo.settings import METHOD_LABELS, Settings
from molkit.models.lm.responses import ResponseCache


def _loading(settings: Settings) -> dict[str, Any]:
    return {"lm_dtype": settings.lm_dtype, "lm_quantization": settings.lm_quantization}


# ----------------------------------------------------------------------------------------- stage 1


@dataclass
class Stage1(Results):
    """`stage1_properties`: ``table`` (the two property lists side by side, the values each
    stage-2 prompt carries), ``rankings`` (dataset -> `rank_properties` table), ``answers``
    (dataset -> the free-text answer), ``properties`` (dataset -> the `PropertyMap` stage 2
    uses)."""

    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    rankings: dict[str, pd.DataFrame] = field(default_factory=dict)
    answers: dict[str, str] = field(default_factory=dict)
    properties: dict[str, PropertyMap] = field(default_factory=dict)

    def rankings_text(self) -> str:
        """Each dataset's ranking as printable text."""
        return "\n".join(
            f"--- {name} ---\n{ranking.round(3).to_string(index=False)}"
            for name, ranking in self.rankings.items()
        )

    def answers_text(self, width: int = 600) -> str:
        """The free-text stage-1 answers, each cut at ``width`` characters."""
        return "\n".join(
            f"--- {name}: free-text stage-1 answer ---\n{answer[:width]}\n"
            for name, answer in self.answers.items()
        )


def stage1_properties(settings: Settings, cache: ResponseCache | None = None) -> Stage1:
    """Both stage-1 modes per dataset, replayed: the paper's free-text answer (parsed, mapped to
    descriptors, the unmapped names counted) and the constrained ranking of the DSM's descriptor
    names; ``settings.stage1`` picks the one stage 2 uses. Rows (per dataset):
    ``free_text_names``, ``free_text_names_mapped``, ``free_text_names_unmapped`` (never passed
    on to stage 2)."""
    cache = cache if cache is not None else response_cache()
    res = Stage1()
    rows = []
    for name in settings.datasets:
        answer, free = stage1_free(
            name, cache, settings.lm_model, settings.stage1_max_new_tokens, settings.offline,
            **_loading(settings),
        )  # fmt: skip
        ranking, ranked = stage1_ranked(
            name, cache, settings.lm_model, settings.stage1_top, settings.offline,
            **_loading(settings),
        )  # fmt: skip
        used = ranked if settings.stage1 == "ranked" else free
        res.properties[name], res.rankings[name], res.answers[name] = used, ranking, answer
        rows.append({
            "dataset": name, "free text: names": free.names,
            "free text: mapped": dict(free.matched), "free text: unmapped": len(free.unmatched),
            "ranked: kept": ranked.names, "stage-2 values": prompt_descriptors(used),
        })  # fmt: skip
        for metric, value in (
            ("free_text_names", len(free.names)),
            ("free_text_names_mapped", len(free.matched)),
            ("free_text_names_unmapped", len(free.unmatched)),
        ):
            res.add_row(name, "stage 1 (free text)", metric, value, seed=settings.seed)
    res.table = pd.DataFrame(rows)
    return res


# -------------------------------------------------------------------------------- generation speed


@dataclass
class Speed(Results):
    """`generation_speed`: the measured ``table`` (empty when nothing was measured), the shipped
    file's ``shipped`` cost and the ``full`` profile's ``budget``."""

    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    shipped: ShippedCost | None = None
    budget: ResponseBudget | None = None


def generation_speed(settings: Settings, stage1: Stage1, paper_scale: str = "full") -> Speed:
    """New tokens per second for ``throughput_prompts`` stage-2 prompts of the first dataset
    (with its stage-1 properties), one at a time and batched: it calls the model, so it measures
    this machine (rows ``tokens_per_s_one_at_a_time``, ``tokens_per_s_batched``; none when
    ``throughput_prompts`` is 0). Beside it, what the responses cost: the shipped file's header
    and `response_budget` of the ``paper_scale`` profile."""
    from molkit.chem import compute_descriptors
    from molkit.data import load_dataset

    res = Speed(shipped=shipped_cost(), budget=response_budget(paper_scale))
    res.table = pd.DataFrame(columns=["mode", "prompts", "new_tokens", "seconds", "tokens_per_s"])
    if not settings.throughput_prompts:
        return res
    dataset = settings.datasets[0]
    smiles = load_dataset(dataset)["smiles"].head(settings.throughput_prompts).tolist()
    values = compute_descriptors(smiles, progress=False)
    props = stage1.properties[dataset]
    prompts = [
        stage2_prompt(s, dataset, "lardo", props, row.to_dict())
        for s, (_, row) in zip(smiles, values.iterrows(), strict=True)
    ]
    res.table = throughput_benchmark(
        settings.lm_model, prompts, max_new_tokens=SPEED_NEW_TOKENS, **_loading(settings)
    )
    for row in res.table.itertuples():
        res.add_row(
            "generation", settings.lm_model, "tokens_per_s_" + row.mode.replace(" ", "_"),
            row.tokens_per_s, seed=settings.seed,
            note=f"{row.prompts} prompts, {SPEED_NEW_TOKENS} new tokens",
        )  # fmt: skip
    return res


# ----------------------------------------------------------------------------------- the benchmark


@dataclass
class DatasetPredictions:
    """One dataset's test predictions, unit by unit (`UnitPredictions`), and its task."""

    dataset: str
    task: str
    units: list[UnitPredictions] = field(default_factory=list)

    def protocol(self, name: str) -> list[UnitPredictions]:
        return [u for u in self.units if u.protocol == name]


@dataclass
class Benchmark(Results):
    """`pretrain_and_finetune`: per dataset the ``descriptions``, their ``text_embeddings``
    (source -> (n, d)), the ``graphs``, the test ``predictions``; the ``pretrain_history`` and
    ``finetune_history`` (one row per epoch, with the chosen ``best_epoch``), the
    ``embedding_maps``, the ``pool_sizes`` per unit, the ``seconds`` per part and the ``workers``
    (processes) that trained the units side by side."""

    descriptions: dict[str, Descriptions] = field(default_factory=dict)
    text_embeddings: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    graphs: dict[str, list] = field(default_factory=dict)
    predictions: dict[str, DatasetPredictions] = field(default_factory=dict)
    pretrain_history: pd.DataFrame = field(default_factory=pd.DataFrame)
    finetune_history: pd.DataFrame = field(default_factory=pd.DataFrame)
    embedding_maps: dict[str, EmbeddingMap] = field(default_factory=dict)
    pool_sizes: pd.DataFrame = field(default_factory=pd.DataFrame)
    seconds: dict[str, float] = field(default_factory=dict)
    workers: int = 1

    def summary(self) -> pd.DataFrame:
        """Test metric per method: mean ± std over the units of each protocol and dataset."""
        from molkit.eval import mean_pm_std

        return mean_pm_std(self.frame(), index="method", columns=("split", "dataset", "metric"))

    def examples(self, n: int = 3) -> pd.DataFrame:
        """`example_descriptions` of the first dataset: its first ``n`` molecules every variant
        described, RDKit's values beside each variant's text."""
        return example_descriptions(next(iter(self.descriptions.values())), n)

    def embedding_map(self) -> EmbeddingMap:
        """The first dataset's test graphs before and after LarDo pre-training (first unit)."""
        return next(iter(self.embedding_maps.values()))

    def timings(self) -> dict[str, int]:
        """Seconds spent on descriptions and embeddings and on training (pre-training and
        fine-tuning, wall time), and the training processes that ran side by side."""
        return {**{k: round(v) for k, v in self.seconds.items()}, "processes": self.workers}

    def chosen_epochs(self) -> pd.DataFrame:
        """Per protocol, dataset and method: epochs run and the epoch kept (mean over units), of
        pre-training (CLIP, held-out pairs) and of fine-tuning (validation part)."""
        tables = []
        for stage, history in (("pre-training", self.pretrain_history),
                               ("fine-tuning", self.finetune_history)):  # fmt: skip
            if history.empty:
                continue
            keys = ["protocol", "dataset", "method", "split", "seed"]
            last = history.groupby(keys, sort=False).tail(1)
            table = last.groupby(keys[:3], sort=False).agg(
                units=("epoch", "size"), epochs_run=("epoch", "mean"),
                epoch_kept=("best_epoch", "mean"),
            )  # fmt: skip
            tables.append(table.assign(stage=stage).set_index("stage", append=True))
        return pd.concat(tables).round(1) if tables else pd.DataFrame()


def _score(task: str, y_true: np.ndarray, y_pred: np.ndarray) -> tuple[str, float]:
    from molkit.eval.metrics import task_metrics

    metric = "roc_auc" if task == "classification" else "rmse"
    return metric, task_metrics(task, y_true, y_pred)[metric]


def _scored_rows(name: str, task: str, unit: UnitPredictions) -> list[dict[str, Any]]:
    """The final scoring of one unit's test predictions (the one place its labels are read)."""
    rows = []
    with final_scoring():
        y = np.asarray(unit.y)
        for arm, pred in unit.preds.items():
            if arm == "mean":
                continue
            frozen = arm.endswith("_frozen")
            metric, value = _score(task, y, pred)
            rows.append({
                "dataset": name, "method": METHOD_LABELS[arm.removesuffix("_frozen")],
                "metric": f"{metric}_frozen" if frozen else metric, "value": value,
                "seed": unit.seed, "split": TEST_SPLITS[unit.protocol],
                "note": "frozen encoder + linear probe" if frozen else
                "" if arm == "rf" else "fine-tuned end to end",
            })  # fmt: skip
    return rows


def pretrain_and_finetune(
    settings: Settings,
    stage1: Stage1,
    cache: ResponseCache | None = None,
    encoder: Any = None,
    progress: bool = True,
) -> Benchmark:
    """The benchmark, per dataset and training unit (`protocol_units`: the official split once
    per seed of ``official_seeds``, then each balanced split of ``splits``).

    The pools' descriptions are replayed from the response cache (stage 2 with ``stage1``'s
    properties) and embedded with the frozen sentence encoder (``encoder``: anything with
    ``embed(texts, batch_size, progress)``; default ``Encoder.from_pretrained(
    settings.text_encoder)``), after the official ``<MOLECULE>`` substitution with
    ``molecule_token``. Per unit (every dataset's units in ``settings.workers`` processes side by
    side, `train_units`), `train_unit`: each encoder of its protocol fine-tuned and probed
    frozen, the Morgan forest, the trivial baseline. Rows: ``roc_auc`` or ``rmse``
    (``*_frozen`` for the probes) per dataset, method and unit (``seed``: the training seed;
    ``split``: which protocol's test part)."""
    from molkit.chem import graphs_from_smiles
    from molkit.data import load_dataset

    cache = cache if cache is not None else response_cache()
    if encoder is None:
        from molkit.models import Encoder

        encoder = Encoder.from_pretrained(settings.text_encoder)
    res = Benchmark(seconds={"descriptions and embeddings": 0.0, "training": 0.0})
    pretrain, finetune, sizes, jobs = [], [], [], []
    for name in settings.datasets:
        began = time.perf_counter()
        df = load_dataset(name)
        task, targets = df.attrs["task"], df.attrs["targets"]
        smiles = df["smiles"].tolist()
        pools = {
            "pool": description_pool(len(smiles), settings.pool),
            "ablation": description_pool(len(smiles), settings.ablation_pool),
        }
        by_variant = {"lardo": "pool", "dsm_only": "pool", "no_dsm": "ablation",
                      "no_stage1": "ablation"}  # fmt: skip
        desc = describe_molecules(
            name, smiles, cache, settings.lm_model, stage1.properties[name],
            settings.max_new_tokens, settings.lm_batch_size, variants=tuple(VARIANTS),
            pools={v: pools[p] for v, p in by_variant.items()}, offline=settings.offline,
            progress=progress, **_loading(settings),
        )  # fmt: skip
        res.descriptions[name] = desc
        emb = text_embeddings(encoder, desc, settings.molecule_token)
        res.text_embeddings[name] = emb
        y = df[targets].to_numpy(dtype=float)
        graphs = graphs_from_smiles(smiles, y, progress=False)
        res.graphs[name] = graphs
        res.seconds["descriptions and embeddings"] += time.perf_counter() - began
        res.predictions[name] = DatasetPredictions(name, task)
        for i, unit in enumerate(protocol_units(settings, smiles)):
            jobs.append((settings, unit, name, task, graphs, y, smiles, emb, pools, i == 0))
    began = time.perf_counter()
    workers = settings.workers or os.cpu_count() or 1
    for job, out in zip(jobs, train_units(jobs, workers), strict=True):
        _, unit, name, task, *_, pools, _ = job
        res.predictions[name].units.append(out.predictions)
        res.add_rows(_scored_rows(name, task, out.predictions))
        pretrain += out.pretrain_history
        finetune += out.finetune_history
        if out.embedding_map is not None:
            res.embedding_maps[name] = out.embedding_map
        sizes.append({
            "dataset": name, "protocol": unit.protocol, "split": unit.split,
            "seed": unit.seed, **{k: len(v) for k, v in unit.parts.items()},
            "pre-training pool": len(np.intersect1d(pools["pool"], unit.parts["train"])),
            "ablation pool": len(np.intersect1d(pools["ablation"], unit.parts["train"])),
            "encoders": len(protocol_encoders(settings, unit.protocol)),
        })  # fmt: skip
    res.seconds["training"] = time.perf_counter() - began
    res.workers = min(workers, len(jobs))
    res.pretrain_history = pd.concat(pretrain, ignore_index=True) if pretrain else pd.DataFrame()
    res.finetune_history = pd.concat(finetune, ignore_index=True)
    res.pool_sizes = pd.DataFrame(sizes)
    return res


# ------------------------------------------------------------------------- what the text carries


@dataclass
class Retrieval(Results):
    """`text_information`: ``hits`` (source -> k -> (n_seeds, n_items), the chance each held-out
    molecule's own text is among its graph's k nearest), ``chance`` (k -> (n_items,) k over the
    dataset's candidates), ``groups`` (the dataset of each item), ``seeds``, the ``table`` (per
    source and k: hit rate, chance and the interval of their difference), the pre-training
    ``history`` and ``units``; ``split`` names the split the held-out molecules come from."""

    hits: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)
    chance: dict[int, np.ndarray] = field(default_factory=dict)
    groups: np.ndarray = field(default_factory=lambda: np.zeros(0))
    seeds: tuple[int, ...] = ()
    split: str = ""
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    history: pd.DataFrame = field(default_factory=pd.DataFrame)
    units: list[RetrievalUnit] = field(default_factory=list)


def _mean_hit(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean(p))


def text_information(
    settings: Settings, bench: Benchmark, ks: tuple[int, ...] = (1, 5)
) -> Retrieval:
    """What each text source tells about its molecule, measured: per dataset, graph-text
    pre-training on the ablation pool's molecules in the training part of the official split (the
    first balanced split without one) with each source of `RETRIEVAL_SOURCES` (LarDo's text, the
    text without DSM values, the DSM text, LarDo's text without the ``<MOLECULE>``
    substitution), one run per training seed (``official_seeds``, else the split's seed); then
    graph -> text retrieval among the texts of the pool's molecules in the validation and test
    parts (held out: never pre-trained on, and no label is read). Rows per dataset, source and k:
    ``top{k}_retrieval`` per seed, the chance level in the note."""
    from molkit.data import scaffold_split
    from molkit.eval.metrics import paired_bootstrap

    res = Retrieval(seeds=tuple(settings.official_seeds or settings.splits[:1]))
    res.split = "official split" if settings.official_seeds else f"balanced split {res.seeds[0]}"
    histories, groups = [], []
    for name in settings.datasets:
        smiles = bench.descriptions[name].smiles
        if settings.official_seeds:
            parts = official_split(smiles)
        else:
            parts = scaffold_split(smiles, (0.8, 0.1, 0.1), balanced=True, seed=res.seeds[0])
        pool = description_pool(len(smiles), settings.ablation_pool)
        train = np.intersect1d(pool, parts["train"])
        held_out = np.intersect1d(pool, np.concatenate([parts["valid"], parts["test"]]))
        if len(held_out) < 2:
            continue  # nothing to retrieve among (a tiny pool)
        emb = {s: e for s, e in bench.text_embeddings[name].items() if s in RETRIEVAL_SOURCES}
        for seed in res.seeds:
            unit = retrieval_unit(
                settings, name, bench.graphs[name], emb, train, held_out, seed, ks
            )
            res.units.append(unit)
            histories += unit.history
            for source, by_k in unit.hits.items():
                for k, hits in by_k.items():
                    res.add_row(
                        name, METHOD_LABELS[source], f"top{k}_retrieval", float(np.mean(hits)),
                        seed=seed, split=f"held out ({res.split})",
                        note=f"{len(held_out)} candidates; chance "
                        f"{min(k, len(held_out)) / len(held_out):.3f}",
                    )  # fmt: skip
        groups += [name] * len(held_out)
    res.groups = np.asarray(groups)
    sources = [s for s in RETRIEVAL_SOURCES if all(s in u.hits for u in res.units)]
    for source in sources:
        res.hits[source] = {
            k: np.vstack([
                np.concatenate([u.hits[source][k] for u in res.units if u.seed == seed])
                for seed in res.seeds
            ])
            for k in ks
        }  # fmt: skip
    per_dataset = [u for u in res.units if u.seed == res.seeds[0]]
    res.chance = {
        k: np.concatenate([np.full(u.candidates, min(k, u.candidates) / u.candidates)
                           for u in per_dataset])
        for k in ks
    }  # fmt: skip
    rows = []
    for source in sources:
        for k in ks:
            boot = paired_bootstrap(
                np.zeros(len(res.groups)), res.hits[source][k], res.chance[k], _mean_hit,
                groups=res.groups,
            )  # fmt: skip
            rows.append({
                "source": METHOD_LABELS[source], "k": k, "held-out molecules": len(res.groups),
                "hit rate": boot["a"], "chance": boot["b"], "hit rate - chance": boot["diff"],
                "low": boot["low"], "high": boot["high"], "seeds": len(res.seeds),
            })  # fmt: skip
    res.table = pd.DataFrame(rows)
    res.history = pd.concat(histories, ignore_index=True) if histories else pd.DataFrame()
    return res


# ------------------------------------------------------------------------------------- calibration


@dataclass
class Calibration(Results):
    """`calibration`: ``checks`` (one row per molecule and variant), ``table`` (one row per
    checked claim), ``summary`` (per variant), ``counts`` (variant -> (contradictions, checkable
    claims) per molecule, aligned over the same molecules) and the ``datasets``."""

    checks: pd.DataFrame = field(default_factory=pd.DataFrame)
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    counts: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    datasets: tuple[str, ...] = ()

    def contradicting_examples(self, per_variant: int = 3) -> pd.DataFrame:
        """A few claims per variant that contradict RDKit, with the stated and computed value."""
        columns = ["dataset", "variant", "descriptor", "text", "stated", "computed"]
        table = self.table[self.table["contradicts"]]
        return table.groupby("variant", sort=False).head(per_variant)[columns]


def calibration(settings: Settings, descriptions: Mapping[str, Descriptions]) -> Calibration:
    """Every description of every variant checked against RDKit (`extract_claims`) on the same
    molecules (those of the ablation pool, which every variant described). Per variant (dataset
    ``all``): ``checkable_claims``, ``share_of_claims_contradicting_rdkit`` (contradictions per
    checkable claim), ``share_descriptions_with_checkable_claim``,
    ``share_descriptions_contradicting_rdkit``, ``share_descriptions_stating_mw``,
    ``share_descriptions_echoing_smiles``."""
    variants = tuple(VARIANTS)
    checked = [check_descriptions(desc, variants) for desc in descriptions.values()]
    res = Calibration(datasets=tuple(descriptions))
    res.checks = pd.concat([c for c, _ in checked], ignore_index=True)
    res.table = pd.concat([t for _, t in checked], ignore_index=True)
    summary = []
    for variant in variants:
        part = res.checks[res.checks["variant"] == variant]
        contradictions = part["contradictions"].to_numpy(float)
        claims = part["claims"].to_numpy(float)
        res.counts[variant] = (contradictions, claims)
        n_claims = int(claims.sum())
        shares = {
            "checkable_claims": n_claims,
            "share_of_claims_contradicting_rdkit":
                contradictions.sum() / n_claims if n_claims else np.nan,
            "share_descriptions_with_checkable_claim": float((claims > 0).mean()),
            "share_descriptions_contradicting_rdkit": float(part["contradicts"].mean()),
            "share_descriptions_stating_mw": float(part["states_mw"].mean()),
            "share_descriptions_echoing_smiles": float(part["echoes_smiles"].mean()),
        }  # fmt: skip
        summary.append({"variant": variant, "descriptions": len(part),
                        "contradictions": int(contradictions.sum()), **shares})  # fmt: skip
        for metric, value in shares.items():
            res.add_row(
                "all", METHOD_LABELS[variant], metric, value, seed=settings.seed,
                note=f"{len(part)} descriptions, {n_claims} checkable claims",
            )  # fmt: skip
    res.summary = pd.DataFrame(summary).set_index("variant")
    return res


# --------------------------------------------------------------------------- a reader's view


@dataclass
class ReaderView(Results):
    """`reader_view`: one row per molecule (``table``) and the same as printable ``text()``."""

    table: pd.DataFrame = field(default_factory=pd.DataFrame)

    def text(self, width: int = 100) -> str:
        import textwrap

        blocks = []
        for row in self.table.itertuples():
            lines = [f"{row.dataset} molecule {row.molecule}: {row.smiles}"]
            for label, value in (("stage-1 properties", row.properties),
                                 ("DSM values given", row.values_given),
                                 ("LLM description", row.description),
                                 ("RDKit says", row.rdkit)):  # fmt: skip
                lines += textwrap.wrap(f"{label}: {' '.join(str(value).split())}", width,
                                       subsequent_indent="    ")  # fmt: skip
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks)


def reader_view(settings: Settings, stage1: Stage1, bench: Benchmark) -> ReaderView:
    """The first ``n_examples`` molecules (by position) of the first dataset that every variant
    described: the stage-1 properties stage 2 named, the DSM values its prompt gave, the LarDo
    description, and what RDKit says of each checkable claim in it (or that it makes none)."""
    name = settings.datasets[0]
    desc = bench.descriptions[name]
    props = stage1.properties[name]
    rows = []
    for i in desc.described_by_all(tuple(VARIANTS))[: settings.n_examples]:
        values = desc.values.iloc[i].to_dict()
        text = desc.texts["lardo"][i]
        found = extract_claims(text, values)
        verdicts = (
            "; ".join(
                f"{c.text!r}: RDKit {c.computed:.3g}, "
                + ("contradicts" if c.contradicts else "agrees")
                for c in found
            )
            or "no claim RDKit can check"
        )
        rows.append({
            "dataset": name, "molecule": int(i), "smiles": desc.smiles[i],
            "properties": ", ".join(props.names) or "(none)",
            "values_given": "; ".join(value_text(k, values[k]) for k in prompt_descriptors(props)),
            "description": text, "rdkit": verdicts,
        })  # fmt: skip
    return ReaderView(table=pd.DataFrame(rows))
