"""One function per Practical section of ``02_icma.ipynb``, each taking the `Settings` first and
returning a typed `Results` (its rows for the record, and the fields the notebook shows). None of
them records; the notebook calls ``molkit.record_results``. The claims are made from what they
return by `molkit.methods.icma.claims`.

1. `load_data`: the pool, the test split (its references sealed: only `evaluate` and the final
   retrieval / metric scoring read them) and the seeded subsets;
2. `check_metrics`: the metric code on MolT5-base's published outputs;
3. `build_retrievers`: BM25 (official Okapi and Lucene), fingerprints, the attribute-masking GIN
   trained to its validation optimum;
4. `retrieval_baselines`: retrieval quality on pool validation queries (which chooses the mol2cap
   retriever), retrieval only on the test pairs;
5. `rerank_contexts`: random walk (per training seed), sequence reversal, test-time probes;
6. `build_prompt_sets`: every arm's training, validation and test prompts within the cut-off;
7. `fine_tune`: every arm and training seed, fine-tuned to its validation optimum, generating;
8. `evaluate`: every candidate on the same LM test molecules.

"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from molkit.methods.icma.corpus import load_corpus, references
from molkit.methods.icma.method import (
    ARMS,
    ICMA,
    MOLT5,
    PROBE_NAMES,
    RANDOM_OUTPUT,
    build_prompts,
    lm_memory,
    rerank,
    tune_and_generate,
)
from molkit.methods.icma.records import (
    ArmPrompts,
    ChebiData,
    Contexts,
    ContextSection,
    DataSection,
    DirectionEvaluation,
    Evaluation,
    MetricCheck,
    NeighbourExample,
    PromptSection,
    PromptSet,
    RetrievalSection,
    Retrievers,
    RetrieverSection,
    Tuning,
    seal_references,
)
from molkit.methods.icma.retrieval import (
    FingerprintRetriever,
    GraphRetriever,
    LuceneBM25Retriever,
    Neighbours,
    OkapiBM25Retriever,
    RandomRetriever,
    pretrain_gin,
    retrieval_only,
    search,
)
from molkit.methods.icma.scoring import (
    evaluate_direction,
    failure_modes,
    molt5_predictions,
    per_item_scores,
)
from molkit.methods.icma.settings import DIRECTIONS, Settings

__all__ = [
    "HEADLINE",
    "load_data",
    "check_metrics",
    "build_retrievers",
    "retrieval_baselines",
    "rerank_contexts",
    "build_prompt_sets",
    "fine_tune",
    "evaluate",
]


def _add_metric_rows(res, settings, direction, method, metrics, split, seed=None) -> None:
    for metric, value in metrics.items():
        res.add_row(
            settings.data_name(direction), method, metric, value,
            seed=settings.seed if seed is None else seed, split=split,
        )  # fmt: skip


# --------------------------------------------------------------------------- 1. data


def load_data(settings: Settings) -> DataSection:
    """The pool and the test split (`load_corpus`: ChEBI-20 or a CSV, de-duplicated by
    InChIKey) and the seeded subsets, drawn in this order from
    ``np.random.default_rng(settings.seed)``: a permutation of the pool whose first
    ``n_lm_valid`` rows validate the LM and the next ``n_train`` train it, the LM test molecules,
    the retrieval-evaluation pairs, the probe subset, the retriever-validation queries, the GIN's
    validation graphs."""
    from molkit.data import subsample
    from molkit.eval.text import meteor_available

    pool, test, note = load_corpus(settings.dataset)
    rng = np.random.default_rng(settings.seed)
    order = rng.permutation(len(pool))
    n_valid = max(1, min(settings.n_lm_valid, len(pool) // 5))  # a small CSV keeps 4/5 to train
    rest = order[n_valid:]
    train_idx = np.sort(rest if settings.n_train is None else rest[: settings.n_train])
    lm_idx = subsample(len(test), settings.n_test, rng=rng)
    retrieval_idx = subsample(len(test), settings.n_retrieval_eval, rng=rng)
    ablation_idx = np.sort(subsample(len(lm_idx), settings.n_ablation, rng=rng))
    val_idx = subsample(len(pool), min(settings.n_retriever_val, len(pool)), rng=rng)
    n_gin = max(1, round(settings.gin_valid_share * len(pool)))
    gin_valid_idx = subsample(len(pool), n_gin, rng=rng)
    test_lm = test.iloc[lm_idx].reset_index(drop=True)
    test_retrieval = test.iloc[retrieval_idx].reset_index(drop=True)
    data = ChebiData(
        pool, test, train_idx, np.sort(order[:n_valid]), test_lm, test_retrieval, ablation_idx,
        val_idx, gin_valid_idx, seal_references(test_lm, "the LM test molecules"),
        seal_references(test_retrieval, "the retrieval test pairs"), note,
    )  # fmt: skip
    meteor = "available (WordNet found)" if meteor_available() else "UNAVAILABLE (no WordNet): NaN"
    summary = (
        f"{note}\nLM training prompts per direction: {len(train_idx)}; LM validation prompts: "
        f"{n_valid} (pool queries, disjoint from the training ones); LM test molecules: "
        f"{len(lm_idx)} (seeded), {len(ablation_idx)} of them for the test-time probes; "
        f"retrieval / MolT5 evaluation: {len(retrieval_idx)} test pairs; retrievers judged on "
        f"{len(val_idx)} pool molecules; the GIN validated on {n_gin} pool graphs\n"
        f"test references sealed: only the final scoring reads them\nMETEOR: {meteor}"
    )
    return DataSection(data=data, summary=summary)


# --------------------------------------------------------------------------- 2. metric check


def check_metrics(settings: Settings, data: ChebiData) -> MetricCheck:
    """MolT5-base's published outputs scored by our metric code on the retrieval-evaluation pairs
    (rows, both directions); `molkit.methods.icma.claims.metric_check_table` puts the MolT5
    paper's numbers beside them."""
    from molkit.data import final_scoring

    res = MetricCheck()
    if not settings.is_chebi20:
        res.skipped = "MolT5's published outputs exist for ChEBI-20 only: no metric check"
        return res
    for direction in DIRECTIONS:
        preds = molt5_predictions(direction, data.test_retrieval)
        with final_scoring():
            truth = data.truth_retrieval[direction].read().tolist()
        res.ours[direction] = evaluate_direction(direction, preds, truth)
        _add_metric_rows(res, settings, direction, MOLT5, res.ours[direction], data.retrieval_split)
    return res


# --------------------------------------------------------------------------- 3. retrievers


def build_retrievers(settings: Settings, data: ChebiData) -> RetrieverSection:
    """Both BM25 variants over the pool's captions, each of ``mol_retrievers`` over its molecules
    (the GIN pre-trained on the pool's graphs but ``gin_valid_idx`` by attribute masking, stopped
    on those graphs' masked-atom loss) and a random retriever; a row: the official BM25's
    throughput with the retrieval-evaluation captions as queries."""
    from molkit.chem import graphs_from_smiles

    pool, timings, molecule, gin_report = data.pool, {}, {}, None
    start = time.perf_counter()
    bm25 = OkapiBM25Retriever(pool["text"].tolist())
    timings["BM25 (Okapi, official) index"] = time.perf_counter() - start
    lucene = LuceneBM25Retriever(pool["text"].tolist())
    for name in settings.mol_retrievers:
        start = time.perf_counter()
        if name == "gin":
            graphs = graphs_from_smiles(pool["smiles"].tolist())
            held = set(data.gin_valid_idx.tolist())
            gin, gin_report = pretrain_gin(
                [g for i, g in enumerate(graphs) if i not in held],
                [graphs[i] for i in sorted(held)],
                layers=settings.gin_layers, hidden=settings.gin_hidden,
                max_epochs=settings.gin_max_epochs, patience=settings.gin_patience,
                seed=settings.seed,
            )  # fmt: skip
            molecule[name] = GraphRetriever(graphs, gin)
        else:
            molecule[name] = FingerprintRetriever(pool["smiles"].tolist(), name)
        timings[f"{name} index"] = time.perf_counter() - start
    molecule["random"] = RandomRetriever(len(pool), seed=settings.seed)
    start = time.perf_counter()
    search("cap2mol", bm25, data.test_retrieval, 1)
    qps = len(data.test_retrieval) / max(time.perf_counter() - start, 1e-9)
    res = RetrieverSection(
        retrievers=Retrievers(
            bm25, lucene, molecule,
            None if settings.mol2cap_retriever == "auto" else settings.mol2cap_retriever,
        ),
        gin_report=gin_report,
        timings=pd.Series(timings).to_frame("seconds"),
    )  # fmt: skip
    res.add_row(
        settings.data_name("cap2mol"), "BM25 retrieval", "queries_per_second", qps,
        seed=settings.seed,
        split=data.retrieval_split, note="tokenisation + retrieval, top-1, caption queries",
    )  # fmt: skip
    lines = [f"BM25 (Okapi, as the official code): {qps:,.0f} queries/s over {len(pool)} captions"]
    if gin_report is not None:
        best = gin_report.curve[[r["step"] for r in gin_report.curve].index(gin_report.best_step)]
        lines.insert(0, (
            f"GIN attribute masking: kept epoch {best['epoch']:.0f} of "
            f"{gin_report.curve[-1]['epoch']:.0f} (validation masked-atom loss "
            f"{best['valid_loss']:.3f}, {gin_report.curve[0]['valid_loss']:.3f} before training)"
            + (", stopped on patience" if gin_report.stopped_early else "")
        ))  # fmt: skip
        res.add_row(
            settings.data_name("mol2cap"), "GIN (attribute masking)", "valid_masked_atom_loss",
            gin_report.best, seed=settings.seed, split=f"pool graphs ({len(data.gin_valid_idx)})",
        )  # fmt: skip
    res.summary = "\n".join(lines)
    return res


# --------------------------------------------------------------------------- 4. retrieval only


def retrieval_baselines(
    settings: Settings, data: ChebiData, retrievers: Retrievers
) -> RetrievalSection:
    """Retrieval quality, then retrieval only, the baseline every LM is compared with.

    Validation (pool only; what it chooses never sees the test split): each of the
    ``n_retriever_val`` pool molecules retrieves from the rest of the pool (never an entry of the
    same molecule) and copies its top-1 neighbour's caption; with ``auto`` the molecule retriever
    with the best mean per-caption ROUGE-L supplies the mol2cap contexts (sets
    ``retrievers.mol2cap``). The same queries' captions retrieve SMILES through each BM25 variant.
    Test (final scoring): each retriever copies its nearest pool entry's output on the
    retrieval-evaluation pairs, with the mean top-1 score."""
    from molkit.data import final_scoring

    res = RetrievalSection(n_val=len(data.val_idx))
    queries = data.pool.iloc[data.val_idx].reset_index(drop=True)
    exclude = [data.exclusions[i] for i in data.val_idx]
    validation = {}
    for direction, named in (("mol2cap", retrievers.molecule),
                             ("cap2mol", {"okapi": retrievers.bm25,
                                          "lucene": retrievers.bm25_lucene})):  # fmt: skip
        truth = references(direction, queries)
        for name, retriever in named.items():
            preds = retrieval_only(
                direction, search(direction, retriever, queries, 1, exclude), data.pool
            )
            scores = per_item_scores(direction, preds, truth)
            if direction == "mol2cap":
                validation[name] = evaluate_direction(direction, preds, truth)
                validation[name]["rougeL_per_item"] = float(scores.mean())
                res.val_scores[name] = scores
            else:
                res.bm25_scores[name] = scores
            metric = "rougeL_per_item" if direction == "mol2cap" else "morgan_sim_per_item"
            method = f"retrieval only ({'bm25 ' if direction == 'cap2mol' else ''}{name})"
            res.add_row(
                settings.data_name(direction), method, metric, float(scores.mean()),
                seed=settings.seed, split=f"pool validation ({len(queries)})",
            )  # fmt: skip
    learnt = {n: v["rougeL_per_item"] for n, v in validation.items() if n != "random"}
    retrievers.mol2cap = retrievers.mol2cap or max(learnt, key=learnt.get)
    res.chosen = retrievers.mol2cap
    res.validation = pd.DataFrame(validation).T
    res.validation["chosen"] = res.validation.index == res.chosen
    table = []
    for name, retriever in {**retrievers.molecule, "bm25": retrievers.bm25}.items():
        direction = "cap2mol" if name == "bm25" else "mol2cap"
        nb = search(direction, retriever, data.test_retrieval, 1)
        preds = retrieval_only(direction, nb, data.pool)
        with final_scoring():
            truth = data.truth_retrieval[direction].read().tolist()
        metrics = evaluate_direction(direction, preds, truth)
        metrics["top1_score"] = float(np.mean(nb.scores[:, 0]))
        _add_metric_rows(
            res, settings, direction, f"retrieval only ({name})", metrics, data.retrieval_split
        )
        table.append({"direction": direction, "retriever": name, **metrics})
    res.table = pd.DataFrame(table).set_index(["direction", "retriever"])
    query, neighbours = data.test_lm.iloc[[0]], {}
    for name, retriever in retrievers.molecule.items():
        nb = search("mol2cap", retriever, query, settings.k)
        neighbours[name] = [
            (data.pool["smiles_raw"][j], data.pool["text"][j], float(score))
            for j, score in zip(nb.indices[0], nb.scores[0], strict=True)
        ]
    res.example = NeighbourExample(query["smiles_raw"].iloc[0], query["text"].iloc[0], neighbours)
    best = ", ".join(f"{n} {v:.3f}" for n, v in res.validation["rougeL_per_item"].items())
    bm25 = ", ".join(f"{n} {v.mean():.3f}" for n, v in res.bm25_scores.items())
    how = "chosen on validation" if settings.mol2cap_retriever == "auto" else "set"
    res.summary = (
        f"mol2cap retrieval on {len(queries)} pool molecules (mean per-caption ROUGE-L of the "
        f"top-1 neighbour's caption): {best}; contexts from: {res.chosen} ({how})\n"
        f"cap2mol retrieval on the same queries' captions (mean Morgan Tanimoto of the top-1 "
        f"SMILES): BM25 {bm25}"
    )
    return res


# --------------------------------------------------------------------------- 5. re-ranking


def rerank_contexts(settings: Settings, data: ChebiData, retrievers: Retrievers) -> ContextSection:
    """Context examples per direction: the top ``random_walk_candidates`` neighbours of each
    training query (never an entry of its own molecule) walked once per training seed
    (``np.random.default_rng((seed, direction number))``), the top-k of the training, validation
    and test queries, and the ``test_time_probes`` on the probe subset: ranked order (no
    reversal, only for k > 1), no context (k = 0), mol2cap contexts from another molecule
    retriever."""
    k, m = settings.k, max(settings.k, settings.random_walk_candidates)
    res = ContextSection()
    train_exclude = [data.exclusions[i] for i in data.train_idx]
    valid_exclude = [data.exclusions[i] for i in data.lm_valid_idx]
    for number, direction in enumerate(DIRECTIONS):
        retriever = retrievers.for_direction(direction)
        train_nb = search(direction, retriever, data.train_queries, m, train_exclude)
        pairs = zip(train_nb.indices.tolist(), train_exclude, strict=True)
        if any(set(row) & set(ex.tolist()) for row, ex in pairs):
            raise RuntimeError(f"{direction}: a training query retrieved its own molecule")
        walked = {
            seed: rerank(train_nb, k, reverse=False, walk_p=settings.random_walk_p,
                         rng=np.random.default_rng((seed, number)))
            for seed in settings.walk_seeds()
        }  # fmt: skip
        valid_nb = search(direction, retriever, data.lm_valid_queries, k, valid_exclude)
        test_nb = search(direction, retriever, data.test_lm, k)
        sub = Neighbours(test_nb.indices[data.ablation_idx], test_nb.scores[data.ablation_idx])
        probes: dict[str, np.ndarray | None] = {}
        for probe in settings.test_time_probes:
            other = probe.removesuffix("_contexts")
            if probe == "no_reversal" and k > 1:  # one example has nothing to reverse
                probes[probe] = rerank(sub, k, reverse=False)
            elif probe == "k0":
                probes[probe] = None
            elif direction == "mol2cap" and other in retrievers.molecule:
                alt = search(direction, retrievers.molecule[other], data.test_ablation, k)
                probes[probe] = rerank(alt, k, reverse=True)
        pairs = zip(walked[settings.seed].tolist(), train_nb.indices[:, :k].tolist(), strict=True)
        off_top = float(np.mean([set(a) != set(b) for a, b in pairs]))
        res.contexts[direction] = Contexts(
            walked, train_nb.indices[:, :k].copy(), valid_nb.indices, test_nb.indices, probes,
            off_top,
        )  # fmt: skip
    res.summary = "\n".join(
        f"{d}: the random walk gave {c.off_top:.0%} of the training prompts (seed "
        f"{settings.seed}) a context other than the top-{k}"
        for d, c in res.contexts.items()
    )
    return res


# --------------------------------------------------------------------------- 6. prompts


def build_prompt_sets(
    settings: Settings, data: ChebiData, contexts: dict[str, Contexts], workdir
) -> PromptSection:
    """Resolve the LM (`molkit.models.lm.resolve_lm`: the smoke LM is a tiny random Llama with a
    BPE vocabulary trained on the pool's captions and SMILES, saved under ``workdir``) and build
    every arm's prompts with its tokenizer: a training or validation prompt gets the cut-off minus
    its answer's tokens, a test prompt the cut-off minus ``max_new_tokens``. ``fit``: the share of
    ICMA's prompts that kept all k examples (1.0 when the cut-off is large enough); ``memory``:
    `lm_memory` for the longest training example (raises before any training when it does not
    fit)."""
    from molkit.models.lm import load_lm, resolve_lm

    pool = data.pool
    corpus = pool["text"].tolist() + pool["smiles_raw"].tolist()
    lm_path = resolve_lm(settings.lm_model, corpus, workdir, vocab_size=1024)
    _, tokenizer = load_lm(lm_path, device="cpu")

    def n_tokens(texts):
        return np.array([len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts])

    res, lines = PromptSection(lm_path=lm_path), []
    for direction in DIRECTIONS:
        ctx, queries = contexts[direction], data.train_queries
        answers = [" " + a for a in references(direction, queries)]
        valid_answers = [" " + a for a in references(direction, data.lm_valid_queries)]
        budget = settings.cutoff - n_tokens(answers) - 1
        valid_budget = settings.cutoff - n_tokens(valid_answers) - 1
        test_budget = settings.cutoff - settings.max_new_tokens(direction)
        arms, kept = {}, {}
        for key, seeds in settings.arm_seeds().items():
            arm = ARMS[key]
            train = {}
            for seed in seeds if arm.tuned else []:
                train[seed], _, kept[key, seed] = build_prompts(
                    direction, queries, pool, ctx.train_for(arm, seed), tokenizer, budget
                )
            valid = build_prompts(direction, data.lm_valid_queries, pool, ctx.valid_for(arm),
                                  tokenizer, valid_budget)[0]  # fmt: skip
            test, _, kept[key, "test"] = build_prompts(
                direction, data.test_lm, pool, ctx.test_for(arm), tokenizer, test_budget
            )
            arms[key] = ArmPrompts(arm, seeds, train, valid, test)
        probes = {
            name: build_prompts(direction, data.test_ablation, pool, c, tokenizer, test_budget)[0]
            for name, c in ctx.probes.items()
        }
        outputs = references(direction, pool)
        icma_test = ctx.test_for(ARMS["icma"])
        res.prompts[direction] = PromptSet(
            answers, valid_answers, arms, probes, [[outputs[j] for j in r] for r in icma_test]
        )
        first = settings.seed
        answer_tokens = n_tokens(answers)
        truth_tokens = n_tokens([" " + a for a in references(direction, data.test_lm)])
        res.lengths[f"{direction} ICMA train"] = (
            n_tokens(arms["icma"].train[first]) + answer_tokens + 1
        )
        res.lengths[f"{direction} ICMA test"] = n_tokens(arms["icma"].test) + truth_tokens + 1
        res.lengths[f"{direction} direct train"] = (
            n_tokens(arms["direct"].train[first]) + answer_tokens + 1
        )
        res.fit[direction] = {
            "train": float(np.mean(kept["icma", first] == settings.k)),
            "test": float(np.mean(kept["icma", "test"] == settings.k)),
        }
        icma_len, direct_len = (res.lengths[f"{direction} {a} train"] for a in ("ICMA", "direct"))
        lines.append(
            f"{direction}: share of ICMA prompts with all {settings.k} context examples within "
            f"the cut-off {settings.cutoff}: {res.fit[direction]['train']:.2f} of training "
            f"prompts, {res.fit[direction]['test']:.2f} of test prompts; training example "
            f"(prompt + answer) tokens: ICMA mean {icma_len.mean():.0f}, longest "
            f"{icma_len.max()}; direct mean {direct_len.mean():.0f}"
        )
    mol2cap = res.prompts["mol2cap"]
    res.example = mol2cap.arms["icma"].train[settings.seed][0] + " ||" + mol2cap.answers[0]
    longest = max(int(v.max()) for k, v in res.lengths.items() if k.endswith("train") and len(v))
    res.memory = lm_memory(settings, lm_path, min(longest, settings.cutoff))
    res.summary = "\n".join(lines)
    return res


# --------------------------------------------------------------------------- 7. fine-tuning


def _run_row(direction, arm, seed, report, run, n_train) -> dict:
    best = report.best_row if report is not None else None
    return {
        "direction": direction, "arm": arm.name, "seed": seed,
        "train examples": n_train if report else 0,
        "tokens trained": report.tokens if report else 0,
        "steps": f"{report.steps} / {report.planned_steps}" if report else "",
        "chosen step": report.best_step if report else np.nan,
        "valid loss": best["valid_loss"] if best else np.nan,
        "valid loss at step 0": report.curve[0]["valid_loss"] if best else np.nan,
        "stopped early": bool(report and report.stopped_early),
        "train tokens/s": report.tokens_per_second if report else np.nan,
        "replayed": bool(report and report.replayed),
        "generation s": run.generated["test"].seconds,
        "generated tokens/s": run.generated["test"].tokens_per_second,
    }  # fmt: skip


def fine_tune(settings: Settings, prompts: dict[str, PromptSet], lm_path: str) -> Tuning:
    """Per direction, every arm and training seed: a fresh copy of the LM fine-tuned with LoRA on
    the arm's training prompts to the optimum of its validation prompts (the untuned arm: none),
    then greedy generation for the test molecules; ICMA's first seed also answers the probes.
    Trained weights are cached (a re-run replays them). Rows per run: tokens trained, the chosen
    step and its validation loss, training and generation throughput."""
    res, stats = Tuning(), []
    for direction in DIRECTIONS:
        p = prompts[direction]
        res.outputs[direction], res.reports[direction], res.probe_outputs[direction] = {}, {}, {}
        for key, ap in p.arms.items():
            arm = ap.arm
            res.seeds[arm.name] = ap.seeds
            outs, reports = [], []
            for seed in ap.seeds:
                sets = {"test": ap.test}
                if key == "icma" and seed == ap.seeds[0]:
                    sets |= {PROBE_NAMES[n]: prompts for n, prompts in p.probes.items()}
                train = list(zip(ap.train[seed], p.answers, strict=True)) if arm.tuned else None
                valid = list(zip(ap.valid, p.valid_answers, strict=True))
                run = tune_and_generate(settings, lm_path, direction, arm, seed, train, valid, sets)
                outs.append(run.texts("test"))
                reports.append(run.report)
                for name in list(sets)[1:]:  # the probes, in the settings' order
                    res.probe_outputs[direction][name] = run.texts(name)
                stats.append(_run_row(direction, arm, seed, run.report, run, len(p.answers)))
                _add_run_rows(res, settings, direction, arm.name, seed, run, len(ap.test))
            res.outputs[direction][arm.name], res.reports[direction][arm.name] = outs, reports
    res.runs = pd.DataFrame(stats)
    res.generation = (
        f"greedy generation, batch {settings.gen_batch_size}, at most "
        f"{settings.max_new_tokens_mol2cap} (mol2cap) / {settings.max_new_tokens_cap2mol} "
        "(cap2mol) new tokens, stopping at the end of the line"
    )
    return res


def _add_run_rows(res, settings, direction, method, seed, run, n_test) -> None:
    dataset, report = settings.data_name(direction), run.report
    if report is not None:  # a replayed run reports the numbers of the run that trained
        rows = {"train_tokens": report.tokens, "chosen_step": report.best_step,
                "train_tokens_per_second": report.tokens_per_second}  # fmt: skip
        if report.best_row is not None:
            rows["valid_loss"] = report.best_row["valid_loss"]
        for metric, value in rows.items():
            res.add_row(dataset, method, metric, value, seed=seed, split="train")
    res.add_row(
        dataset, method, "generation_tokens_per_second", run.generated["test"].tokens_per_second,
        seed=seed, split=f"test subset ({n_test})",
    )  # fmt: skip


# --------------------------------------------------------------------------- 8. evaluation

#: The summary table's columns per direction (the paper's headline metrics; cap2mol FTS both over
#: valid molecules, MolT5's convention, and with an invalid molecule as 0).
HEADLINE = {
    "mol2cap": ["bleu2", "bleu4", "rougeL", "meteor"],
    "cap2mol": ["exact_match", "morgan_fts", "morgan_fts_all", "validity"],
}


_ARM_BY_NAME = {arm.name: arm for arm in ARMS.values()}


def evaluate(
    settings: Settings,
    data: ChebiData,
    retrievers: Retrievers,
    tuning: Tuning,
    prompts: dict[str, PromptSet],
) -> Evaluation:
    """The final scoring (the one place the test references are read): every LM arm (per
    training seed), retrieval only with the direction's retriever, a random pool output (the
    gate of every arm), MolT5-base's published outputs (ChEBI-20), on the same LM test molecules;
    the probes beside ICMA's first seed on their subset. Rows: every metric, per training seed for
    the LM arms."""
    from molkit.data import final_scoring

    res = Evaluation(seeds={m: len(s) for m, s in tuning.seeds.items()},
                     n_test=len(data.test_lm), n_probe=len(data.ablation_idx))  # fmt: skip
    random = RandomRetriever(len(data.pool), seed=settings.seed)
    for direction in DIRECTIONS:
        with final_scoring():
            truth = data.truth[direction].read().tolist()
        copy, rand = f"retrieval only ({retrievers.name(direction)})", RANDOM_OUTPUT[direction]
        fixed = {
            copy: retrieval_only(
                direction, search(direction, retrievers.for_direction(direction), data.test_lm, 1),
                data.pool,
            ),
            rand: retrieval_only(direction, search(direction, random, data.test_lm, 1), data.pool),
        }  # fmt: skip
        if settings.is_chebi20:
            fixed[MOLT5] = molt5_predictions(direction, data.test_lm)
        rows, scores = {}, {}
        for method, runs in tuning.outputs[direction].items():
            per_seed = [evaluate_direction(direction, preds, truth) for preds in runs]
            for seed, metrics in zip(tuning.seeds[method], per_seed, strict=True):
                _add_metric_rows(res, settings, direction, method, metrics, data.lm_split, seed)
            rows[method] = pd.DataFrame(per_seed).mean().to_dict()
            scores[method] = np.stack([per_item_scores(direction, r, truth) for r in runs])
        for method, preds in fixed.items():
            rows[method] = evaluate_direction(direction, preds, truth)
            _add_metric_rows(res, settings, direction, method, rows[method], data.lm_split)
            scores[method] = per_item_scores(direction, preds, truth)
        first = {m: runs[0] for m, runs in tuning.outputs[direction].items()}
        sub, probes = data.ablation_idx, tuning.probe_outputs[direction]
        sub_truth = [truth[i] for i in sub]
        sub_preds = {ICMA: [first[ICMA][i] for i in sub], **probes}
        probe_rows = {m: evaluate_direction(direction, p, sub_truth) for m, p in sub_preds.items()}
        for method in probes:
            _add_metric_rows(res, settings, direction, method, probe_rows[method],
                             data.ablation_split, tuning.seeds[ICMA][0])  # fmt: skip
        context = prompts[direction].test_context_outputs
        modes = {  # shares over every (seed, molecule) of an arm
            m: pd.concat([failure_modes(direction, r, context if _ARM_BY_NAME[m].context else None)
                          for r in runs]).mean()
            for m, runs in tuning.outputs[direction].items()
        }  # fmt: skip
        res.directions[direction] = DirectionEvaluation(
            table=pd.DataFrame(rows).T,
            scores=scores,
            probe_table=pd.DataFrame(probe_rows).T,
            probe_scores={m: per_item_scores(direction, p, sub_truth)
                          for m, p in sub_preds.items()},
            failures=pd.DataFrame(modes).T,
            predictions=pd.DataFrame({"truth": truth, **first, **fixed}),
            examples=pd.DataFrame({
                "input": references("cap2mol" if direction == "mol2cap" else "mol2cap",
                                    data.test_lm),
                "truth": truth, ICMA: first[ICMA],
                "last (most similar) context output": [c[-1] for c in context],
                "ICMA score": scores[ICMA][0],
            }).join(failure_modes(direction, first[ICMA], context)),
            copy=copy,
            random=rand,
        )  # fmt: skip
    res.summary = pd.concat(
        {d: e.table[[c for c in HEADLINE[d] if c in e.table]] for d, e in res.directions.items()},
        axis=1,
    )
    return res
