"""Regex SMILES tokenisation (Schwaller et al.), mapped straight onto a BERT vocabulary.

rxnfp's BERT was trained on tokens from one regular expression: bracket atoms such as
``[C@@H]`` or ``[nH+]`` are single tokens, as are ``Cl``, ``Br``, ``%10`` and the reaction
arrow ``>>``. A stock ``BertTokenizer`` on the same ``vocab.txt`` first splits on punctuation,
cutting every bracket atom into pieces, and 4-18 % of tokens on drug-like SMILES become
``[UNK]``. `RegexSmilesTokenizer` applies the regex and looks the tokens up directly.

Characters the regex does not cover are not dropped silently (as ``re.findall`` would): each
becomes its own token, hence ``[UNK]``, so `unk_rate` reports them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

#: rxnfp's pattern: the Schwaller et al. (2019) regex plus ``%(nnn)`` ring bonds, ``|`` and ``>>``.
SMILES_REGEX_PATTERN = (
    r"(\%\([0-9]{3}\)|\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\||\(|\)|\.|=|#|-|\+|\\|\/|:|~|@"
    r"|\?|>>?|\*|\$|\%[0-9]{2}|[0-9])"
)
_TOKEN_OR_STRAY = re.compile(SMILES_REGEX_PATTERN + r"|(\S)")

CONFIG_FILE = "smiles_tokenizer.json"


def tokenize_smiles(smiles: str) -> list[str]:
    """Split a SMILES (or reaction SMILES) into regex tokens; stray characters stay as tokens.

    >>> tokenize_smiles("C[C@@H](N)Cl")
    ['C', '[C@@H]', '(', 'N', ')', 'Cl']
    """
    return [match.group(0) for match in _TOKEN_OR_STRAY.finditer(smiles)]


class RegexSmilesTokenizer:
    """A BERT-vocabulary tokenizer for SMILES, callable like a Hugging Face tokenizer.

    ``tokenizer(["CCO", "c1ccccc1"])`` returns a `transformers.BatchEncoding` of
    ``input_ids``, ``attention_mask`` and ``token_type_ids``, each ``(n, length)`` int64:
    ``[CLS] tokens [SEP]``, right-padded with ``[PAD]`` to the longest (or to ``max_length``),
    truncated to ``max_length`` (512) including the two special tokens.
    """

    padding_side = "right"

    def __init__(
        self,
        vocab_file: str | os.PathLike,
        max_length: int = 512,
        unk_token: str = "[UNK]",
        pad_token: str = "[PAD]",
        cls_token: str = "[CLS]",
        sep_token: str = "[SEP]",
        mask_token: str = "[MASK]",
    ) -> None:
        self.vocab_file = Path(vocab_file)
        self._lines = self.vocab_file.read_text(encoding="utf-8").splitlines()
        self.vocab: dict[str, int] = {}
        for index, token in enumerate(self._lines):
            self.vocab.setdefault(token.strip(), index)
        self.ids_to_tokens = {index: token for token, index in self.vocab.items()}
        self.model_max_length = int(max_length)
        self.unk_token, self.pad_token, self.cls_token = unk_token, pad_token, cls_token
        self.sep_token, self.mask_token = sep_token, mask_token
        missing = [t for t in self.all_special_tokens if t not in self.vocab]
        if missing:
            raise ValueError(f"{self.vocab_file} lacks the special tokens {missing}")

    # --- vocabulary ------------------------------------------------------------------------------

    @property
    def all_special_tokens(self) -> list[str]:
        return [self.pad_token, self.unk_token, self.cls_token, self.sep_token, self.mask_token]

    @property
    def all_special_ids(self) -> list[int]:
        return [self.vocab[t] for t in self.all_special_tokens]

    unk_token_id = property(lambda self: self.vocab[self.unk_token])
    pad_token_id = property(lambda self: self.vocab[self.pad_token])
    cls_token_id = property(lambda self: self.vocab[self.cls_token])
    sep_token_id = property(lambda self: self.vocab[self.sep_token])
    mask_token_id = property(lambda self: self.vocab[self.mask_token])

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def __len__(self) -> int:
        return len(self.vocab)

    def get_vocab(self) -> dict[str, int]:
        return dict(self.vocab)

    def tokenize(self, text: str) -> list[str]:
        """Regex tokens of one SMILES; special tokens written in the text (``[MASK]``) are kept."""
        return tokenize_smiles(text)

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        if isinstance(tokens, str):
            return self.vocab.get(tokens, self.unk_token_id)
        unk = self.unk_token_id
        return [self.vocab.get(token, unk) for token in tokens]

    def convert_ids_to_tokens(self, ids: int | Sequence[int]) -> str | list[str]:
        if isinstance(ids, int):
            return self.ids_to_tokens.get(ids, self.unk_token)
        return [self.ids_to_tokens.get(int(i), self.unk_token) for i in ids]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Join the tokens of ``ids`` back into a SMILES string."""
        special = set(self.all_special_ids) if skip_special_tokens else set()
        ids = [int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]
        return "".join(self.ids_to_tokens.get(i, self.unk_token) for i in ids if i not in special)

    def unk_rate(self, smiles: Iterable[str]) -> float:
        """Fraction of tokens (special tokens excluded) that map to ``[UNK]``."""
        return unk_rate(self, smiles)

    # --- encoding --------------------------------------------------------------------------------

    def encode(
        self,
        text: str,
        add_special_tokens: bool = True,
        truncation: bool = True,
        max_length: int | None = None,
    ) -> list[int]:
        """Token ids of one SMILES, with ``[CLS]``/``[SEP]`` and truncation by default."""
        ids = self.convert_tokens_to_ids(self.tokenize(text))
        limit = max_length or self.model_max_length
        if add_special_tokens:
            if truncation:
                ids = ids[: max(limit - 2, 0)]
            return [self.cls_token_id, *ids, self.sep_token_id]
        return ids[:limit] if truncation else ids

    def __call__(
        self,
        texts: str | Sequence[str],
        padding: bool | str = True,
        truncation: bool = True,
        max_length: int | None = None,
        return_tensors: str | None = "pt",
        add_special_tokens: bool = True,
        **unused: Any,
    ):
        """Encode a SMILES or a batch of SMILES into a `transformers.BatchEncoding`.

        ``padding``: True/"longest" pads to the longest sequence, "max_length" to
        ``max_length``, False not at all (then ``return_tensors`` must be None unless all
        lengths agree). ``return_tensors``: "pt", "np" or None (lists).
        """
        from transformers import BatchEncoding

        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        limit = max_length or self.model_max_length
        ids = [self.encode(t, add_special_tokens, truncation, limit) for t in batch]
        if padding in (True, "longest"):
            width = max((len(row) for row in ids), default=0)
        elif padding == "max_length":
            width = limit
        else:
            width = None
        masks = [[1] * len(row) for row in ids]
        if width is not None:
            pad = self.pad_token_id
            masks = [mask + [0] * (width - len(mask)) for mask in masks]
            ids = [row + [pad] * (width - len(row)) for row in ids]
        data = {
            "input_ids": ids,
            "token_type_ids": [[0] * len(row) for row in ids],
            "attention_mask": masks,
        }
        if single and return_tensors is None:
            data = {key: value[0] for key, value in data.items()}
        return BatchEncoding(data, tensor_type=return_tensors)

    # --- persistence -----------------------------------------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``vocab.txt`` and ``smiles_tokenizer.json`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "vocab.txt").write_text("\n".join(self._lines) + "\n", encoding="utf-8")
        config = {"vocab_file": "vocab.txt", "max_length": self.model_max_length}
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=1))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> RegexSmilesTokenizer:
        """Load from a folder holding ``smiles_tokenizer.json`` (or just ``vocab.txt``)."""
        directory = Path(directory)
        config_path = directory / CONFIG_FILE
        config = json.loads(config_path.read_text()) if config_path.exists() else {}
        vocab_file = directory / config.get("vocab_file", "vocab.txt")
        return cls(vocab_file, max_length=config.get("max_length", 512))

    def __repr__(self) -> str:
        return (
            f"RegexSmilesTokenizer(vocab_file={str(self.vocab_file)!r}, "
            f"vocab_size={self.vocab_size}, max_length={self.model_max_length})"
        )


def unk_rate(tokenizer: Any, smiles: Iterable[str]) -> float:
    """Fraction of tokens that ``tokenizer`` maps to its unknown token, special tokens excluded.

    Works for `RegexSmilesTokenizer` and any Hugging Face tokenizer, so the two can be compared
    on the same SMILES. Returns 0.0 for an empty input.
    """
    unk_id = tokenizer.unk_token_id
    total = unknown = 0
    for text in smiles:
        ids = tokenizer.encode(text, add_special_tokens=False)
        total += len(ids)
        unknown += sum(1 for i in ids if i == unk_id)
    return unknown / total if total else 0.0
