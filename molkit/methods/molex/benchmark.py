"""CPU inference speed of MoleX against the two language-model classifiers it stands beside, on the
same molecules in one run: `speed_report` (what ``molkit bench`` and notebook 01 call).

* MoleX end to end on known n-grams (`molkit.methods.molex.inference.NgramPredictor`): parse the
  SMILES, match the functional groups and cut the n-grams, write each n-gram's text (the memo of
  fragment keys, warmed on other molecules, or RDKit's writer), look its contribution up and sum.
* The rxnfp-BERT classifier: tokenise, every layer, pooling, a bottleneck head (the fine-tuned
  classifier of a MoleX run, or a random head of the same shape: the cost is the same).
* The SmolLM2-135M label-word classifier (`molkit.methods.molex.llm.score_label_words`): the
  prompt through the chat template, tokenised, one forward pass scoring every label word.

Each pipeline is timed end to end (best of ``repeats``) and stage by stage, so the report gives
molecules/s, the share of time in each stage and MoleX's speed-up over each classifier.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["SPEED_TARGETS", "group_matching_rate", "speed_report"]

#: MoleX end to end against each classifier: the speed-up the issue asks for (x).
SPEED_TARGETS = {"rxnfp_bert": 10.0, "smollm2": 100.0}


def _best(fn: Callable[[], Any], repeats: int) -> float:
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def group_matching_rate(smiles: Sequence[str], repeats: int = 3) -> dict[str, float]:
    """Molecules/s of parsing (``Chem.MolFromSmiles``) and of functional-group matching on parsed
    molecules (`molkit.chem.groups`: atom typing, pattern screening, substructure searches), in
    this process's threads (run it pinned to one core for a one-core figure)."""
    from rdkit import Chem

    from molkit.chem.groups import _atom_types, _compiled, _match_groups

    _compiled()
    smiles = list(smiles)
    mols = [Chem.MolFromSmiles(s) for s in smiles]
    parse = _best(lambda: [Chem.MolFromSmiles(s) for s in smiles], repeats)
    match = _best(lambda: [_match_groups(m, _atom_types(m)) for m in mols], repeats)
    n = len(smiles)
    return {
        "molecules": n,
        "parse_seconds": parse,
        "match_seconds": match,
        "parse_mol_per_s": n / parse,
        "match_mol_per_s": n / match,
    }


def _molex_stages(predictor, smiles: list[str], repeats: int, memo: dict) -> dict[str, float]:
    """Seconds of MoleX's stages over ``smiles``, each from the memo state ``memo``: parse,
    match (groups, skeleton tokens, n-gram atom sets), texts (fragment keys, memo or RDKit's
    writer) and lookup (table rows, sparse sum)."""
    from scipy import sparse

    from molkit.chem.groups import _atom_types
    from molkit.methods.molex.inference import _parse, _token_atoms, _windows

    texts = predictor.ngram_texts
    mols = [_parse(s) for s in smiles]
    parse = _best(lambda: [_parse(s) for s in smiles], repeats)
    n_max = predictor.n_max
    match = _best(lambda: [_windows(_token_atoms(m, _atom_types(m)), n_max) for m in mols], repeats)

    def analyse_and_write():
        texts._memo = dict(memo)
        return [texts._lookup(m, *texts._analyse(m, s)) for m, s in zip(mols, smiles, strict=True)]

    written = analyse_and_write()
    with_texts = _best(analyse_and_write, repeats)
    index = predictor.index

    def lookup():
        ids = [[index[t] for t in found if t in index] for found in written]
        indptr = np.cumsum([0] + [len(i) for i in ids])
        flat = np.fromiter((j for i in ids for j in i), dtype=np.int64, count=indptr[-1])
        counts = sparse.csr_matrix(
            (np.ones(len(flat)), flat, indptr), shape=(len(ids), len(predictor.texts))
        )
        return np.asarray(counts @ predictor.contributions) + predictor.intercept

    return {
        "parse": parse,
        "match": match,
        "texts": max(with_texts - match, 0.0),
        "lookup": _best(lookup, repeats),
    }


def _bert_classifier(
    chemical_lm, classifier, smiles: list[str], batch_size: int, max_length: int, repeats: int
) -> dict[str, float]:
    """Seconds of the BERT classifier: tokenise (length-sorted batches) and forward (every layer,
    pooling, head)."""
    from molkit.models.prefix import pool, prefix_hidden

    model, tokenizer = chemical_lm
    n_layers = len(model.encoder.layer)
    ordered = sorted(smiles, key=len)
    batches = [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]

    def tokenise():
        return [
            tokenizer(b, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            for b in batches
        ]

    encoded = tokenise()
    if classifier is None:
        gen = torch.Generator().manual_seed(0)
        hidden = model.config.hidden_size
        head = torch.nn.Sequential(torch.nn.Linear(hidden, 64), torch.nn.Linear(64, 2))
        for param in head.parameters():
            torch.nn.init.normal_(param, std=0.05, generator=gen)

        def forward(enc):
            states = prefix_hidden(model, enc, n_layers)
            return head(pool(states, enc["attention_mask"], "mean"))
    else:

        def forward(enc):
            states = prefix_hidden(model, enc, classifier.n_frozen)
            return classifier(states, enc["attention_mask"])[0]

    def run():
        with torch.inference_mode():
            return [forward(e) for e in encoded]

    run()  # warm-up
    return {"tokenise": _best(tokenise, repeats), "forward": _best(run, repeats)}


def _llm_classifier(
    llm, smiles: list[str], dataset, batch_size: int, repeats: int
) -> dict[str, float]:
    """Seconds of the label-word classifier: prompt (chat template) and tokenise, then the
    forward pass that scores every label word."""
    from molkit.methods.molex.llm import _encode_prompt, label_prompts, zero_shot_scores

    model, tokenizer = llm
    zero_shot_scores(model, tokenizer, smiles[:batch_size], dataset, batch_size)  # warm-up
    prepare = _best(
        lambda: [_encode_prompt(tokenizer, p) for p in label_prompts(tokenizer, smiles, dataset)],
        repeats,
    )
    total = min(
        zero_shot_scores(model, tokenizer, smiles, dataset, batch_size).seconds
        for _ in range(max(1, repeats))
    )
    return {"prompt and tokenise": prepare, "forward": max(total - prepare, 0.0)}


def _load(what, loader: Callable):
    return loader(what) if isinstance(what, str) else what


def speed_report(
    molecules: Sequence[str],
    *,
    warm: Sequence[str] = (),
    predictor=None,
    chemical_lm: Any = "rxnfp-bert",
    classifier=None,
    llm: Any = "smollm2-135m-instruct",
    dataset: Any = "mutag",
    n_max: int = 3,
    repeats: int = 3,
    batch_size: int = 64,
    llm_batch_size: int = 32,
    max_length: int = 256,
) -> dict[str, Any]:
    """MoleX end to end on known n-grams against the rxnfp-BERT classifier and the SmolLM2-135M
    label-word classifier, on the same ``molecules``, in this process (best of ``repeats``).

    ``predictor``: a fitted `NgramPredictor` whose table holds every n-gram of ``molecules``; None
    builds one over the n-grams of ``molecules`` and ``warm`` with random contributions (timing
    only: the cost does not depend on the numbers). *Known n-grams*: the memo holds the keys of
    ``warm``'s fragments (e.g. the training molecules) and the canonical keys of the table's
    n-grams (what a shipped model knows), so every text is found without RDKit's writer; the
    *first pass* figure starts from ``warm``'s keys alone (a fragment no training molecule had is
    written by RDKit).
    ``chemical_lm``: a registry name or a loaded (model, tokenizer); ``classifier``: a fine-tuned
    `IBClassifier` (None: a random head over every layer). ``llm``: a registry name, a loaded
    (model, tokenizer) or None to skip it; ``dataset``: whose question the LLM answers (a name of
    `molkit.methods.molex.llm.TASK_PROMPTS` or a `TaskPrompt`).

    Returns {"molecules", "torch_threads", "molex", "rxnfp_bert", "smollm2" (absent when ``llm``
    is None), "speedup_vs_rxnfp_bert", "speedup_vs_smollm2", "targets"}; each pipeline's entry
    holds ``mol_per_s`` (end to end), ``seconds`` and ``shares`` (stage -> share of the summed
    stage times); MoleX's also ``memo_hit_rate``, ``first_pass_mol_per_s`` and
    ``first_pass_memo_hit_rate``, ``n_texts``, ``ngrams_per_molecule`` and
    ``group_matching_mol_per_s``; ``targets`` says which speed-ups reach `SPEED_TARGETS`."""
    from molkit.methods.molex.inference import NgramPredictor
    from molkit.methods.molex.ngrams import build_ngram_table
    from molkit.models.lm import load_causal_lm
    from molkit.models.prefix import load_chemical_lm

    smiles, warm = list(molecules), list(warm)
    n = len(smiles)
    if not n:
        raise ValueError("speed_report needs at least one molecule")
    if predictor is None:
        table = build_ngram_table(smiles + warm, n_max=n_max, progress=False)
        rng = np.random.default_rng(0)
        predictor = NgramPredictor(
            table.texts, rng.normal(size=(len(table.texts), 2)), rng.normal(size=2), n_max
        )
    predictor.warm(warm)
    texts = predictor.ngram_texts
    first = dict(texts._memo)  # what the training molecules left
    texts.remember_canonical(smiles)  # and the canonical keys of the table's n-grams
    known = dict(texts._memo)
    hit_rate = {}

    def molex_pass(memo: dict, name: str):
        texts._memo = dict(memo)  # every repeat starts from the same memo
        hits, misses = texts.hits, texts.misses
        predictor.decision_function(smiles)
        done = texts.hits - hits + texts.misses - misses
        hit_rate[name] = (texts.hits - hits) / max(done, 1)

    molex_seconds = _best(lambda: molex_pass(known, "known"), repeats)
    first_seconds = _best(lambda: molex_pass(first, "first"), repeats)
    stages = _molex_stages(predictor, smiles, repeats, known)
    texts._memo = known
    report: dict[str, Any] = {"molecules": n, "torch_threads": torch.get_num_threads()}
    report["molex"] = _entry(n, molex_seconds, stages)
    report["molex"].update(
        memo_hit_rate=hit_rate["known"],
        first_pass_mol_per_s=n / first_seconds,
        first_pass_memo_hit_rate=hit_rate["first"],
        n_texts=len(predictor.texts),
        ngrams_per_molecule=float(np.mean([len(t) for t in _written(predictor, smiles)])),
        group_matching_mol_per_s=group_matching_rate(smiles, repeats)["match_mol_per_s"],
    )
    bert = _load(chemical_lm, load_chemical_lm)
    stages = _bert_classifier(bert, classifier, smiles, batch_size, max_length, repeats)
    report["rxnfp_bert"] = _entry(n, sum(stages.values()), stages)
    report["rxnfp_bert"]["layers"] = len(bert[0].encoder.layer)
    report["speedup_vs_rxnfp_bert"] = report["rxnfp_bert"]["seconds"] / molex_seconds
    targets = {"rxnfp_bert": report["speedup_vs_rxnfp_bert"] >= SPEED_TARGETS["rxnfp_bert"]}
    if llm is not None:
        lm = _load(llm, lambda name: load_causal_lm(name, device="cpu"))
        stages = _llm_classifier(lm, smiles, dataset, llm_batch_size, repeats)
        report["smollm2"] = _entry(n, sum(stages.values()), stages)
        report["speedup_vs_smollm2"] = report["smollm2"]["seconds"] / molex_seconds
        targets["smollm2"] = report["speedup_vs_smollm2"] >= SPEED_TARGETS["smollm2"]
    report["targets"] = targets
    return report


def _entry(n: int, seconds: float, stages: dict[str, float]) -> dict[str, Any]:
    total = sum(stages.values()) or 1.0
    return {
        "mol_per_s": n / seconds,
        "seconds": seconds,
        "shares": {k: v / total for k, v in stages.items()},
    }


def _written(predictor, smiles: list[str]) -> list[list[str]]:
    texts = predictor.ngram_texts
    return [texts.texts(s) for s in smiles]
