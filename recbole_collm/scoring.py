"""Scoring (user, item) pairs and recommending for users from a saved model — any plugin model,
the LLM ones included.

The checkpoint's own dataset (rebuilt by :func:`recbole_collm.restore.restore`) gives the token
→ id maps and each user's history: the user's most recent positive items before the pair's
timestamp when one is given, else all of them (what the model saw for its latest rows). Pairs are
read in chunks and written as they are scored, so memory does not grow with the file; within a
chunk the rows of one user are scored side by side, so the LLM models encode their shared prompt
prefix once. Scores are the model's ``predict`` (probabilities for the labeled models).
"""
from __future__ import annotations

import csv
import math
import os
from typing import Iterator

import numpy as np
import torch
from recbole.data.interaction import Interaction
from tqdm import tqdm

from recbole_collm.data.sampling import popular_items
from recbole_collm.errors import InputError, MissingInputError
from recbole_collm.files import atomic_write
from recbole_collm.restore import Restored, restore

CHUNK_ROWS = 8192  # pairs read, scored and written at a time


class PairScorer:
    """Scores pairs given as tokens with a restored model; histories from its dataset."""

    def __init__(self, restored: Restored, batch_size: int | None = None):
        config, dataset = restored.config, restored.dataset
        self.model = restored.model.to(config["device"]).eval()
        self.device = config["device"]
        self.batch_size = int(batch_size or config["eval_batch_size"])
        self.uid, self.iid = dataset.uid_field, dataset.iid_field
        self.list_field = self.iid + config["LIST_SUFFIX"]
        self.length_field = config["ITEM_LIST_LENGTH_FIELD"]
        self.max_len = int(config["MAX_ITEM_LIST_LENGTH"])
        self.user_ids, self.item_ids = dataset.field2token_id[self.uid], dataset.field2token_id[self.iid]
        self.item_tokens = dataset.field2id_token[self.iid]
        feat = dataset.inter_feat
        users, items = feat[self.uid].numpy(), feat[self.iid].numpy()
        order = np.argsort(users, kind="stable")
        self.by_user_items = items[order]  # every row's item, a user's rows side by side
        self.row_start = np.searchsorted(users[order], np.arange(dataset.user_num + 1))
        self.positive_history = dataset.positive_history  # the dataset's own rule, on exact times

    # --- tokens and histories -------------------------------------------------------------------
    def ids(self, tokens: list[str], field: str) -> np.ndarray:
        """Internal ids of ``tokens`` (-1 for a token the checkpoint's dataset does not know)."""
        table = self.user_ids if field == self.uid else self.item_ids
        return np.array([table.get(t, -1) for t in tokens], dtype=np.int64)

    def history(self, users: np.ndarray, times: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Each pair's user's last ``MAX_ITEM_LIST_LENGTH`` positive items (oldest first,
        right-padded), strictly before ``times`` when given, else all of them: the rule the
        dataset built its own rows' histories with."""
        return self.positive_history(users, times, self.max_len)

    # --- scoring --------------------------------------------------------------------------------
    @torch.no_grad()
    def score_ids(self, users: np.ndarray, items: np.ndarray, times: np.ndarray | None = None) -> np.ndarray:
        """Scores in the given order; computed user by user (prefix sharing for the LLMs)."""
        history, length = self.history(users, times)
        order = np.lexsort((np.arange(len(users)), users))
        scores = np.empty(len(users), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            batch = Interaction({
                self.uid: torch.from_numpy(users[rows]), self.iid: torch.from_numpy(items[rows]),
                self.list_field: torch.from_numpy(history[rows]), self.length_field: torch.from_numpy(length[rows]),
            }).to(self.device)
            scores[rows] = self.model.predict(batch).float().cpu().numpy()
        return scores

    def seen(self, user: int) -> np.ndarray:
        """Items the user interacted with in the checkpoint's dataset (any label)."""
        return np.unique(self.by_user_items[self.row_start[user] : self.row_start[user + 1]])


def read_pairs(path: str, chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[list[int], list[list[str]]]]:
    """``(line numbers, rows)`` chunks of a tab-separated file of ``user item [timestamp]`` (a
    header line naming the user field is skipped, blank lines too)."""
    if not os.path.isfile(path):
        raise MissingInputError(f"--pairs: '{path}' not found")
    with open(path, newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        chunk, lines = [], []
        for number, row in enumerate(reader, start=1):
            if number == 1 and row and row[0].split(":")[0] in ("user_id", "user"):
                continue
            if not row or not "".join(row).strip():
                continue
            if len(row) not in (2, 3):
                raise InputError(f"{path}, line {number}: expected 'user<TAB>item[<TAB>timestamp]', got {len(row)} fields")
            chunk.append(row)
            lines.append(number)
            if len(chunk) == chunk_rows:
                yield lines, chunk
                chunk, lines = [], []
        if chunk:
            yield lines, chunk


def _check_tokens(scorer: PairScorer, path: str) -> int:
    """A first pass over the file: every token known, timestamps finite numbers and on every line
    or on none, at least one pair; returns the row count. Unknown tokens are one error with their
    count and the first lines holding them."""
    unknown, rows, lines_with_unknown, widths = 0, 0, [], set()
    for lines, chunk in read_pairs(path):
        users = scorer.ids([r[0] for r in chunk], scorer.uid)
        items = scorer.ids([r[1] for r in chunk], scorer.iid)
        bad = np.flatnonzero((users < 0) | (items < 0))
        unknown += len(bad)
        lines_with_unknown += [lines[int(b)] for b in bad[: max(0, 5 - len(lines_with_unknown))]]
        for number, row in zip(lines, chunk):
            widths.add(len(row))
            if len(row) == 3:
                try:
                    finite = math.isfinite(float(row[2]))
                except ValueError:
                    finite = False
                if not finite:
                    raise InputError(f"{path}, line {number}: timestamp '{row[2]}' is not a finite number")
        rows += len(chunk)
    if len(widths) > 1:
        raise InputError(f"{path}: give a timestamp on every line or on none")
    if unknown:
        raise InputError(
            f"{path}: {unknown} pair(s) with a user or item token the checkpoint's dataset does not know "
            f"(lines {', '.join(map(str, lines_with_unknown))}{', ...' if unknown > len(lines_with_unknown) else ''})"
        )
    if not rows:
        raise InputError(f"{path}: no pairs; expected lines of 'user<TAB>item[<TAB>timestamp]'")
    return rows


def check_output(out: str, *inputs: tuple[str, str]) -> None:
    """``--out`` must be a new or replaceable file in an existing folder, and none of the inputs
    (``(option, path)``): writing it would destroy what is being read."""
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise MissingInputError(f"--out: folder '{folder}' does not exist")
    if os.path.isdir(out):
        raise InputError(f"--out: '{out}' is a folder; give a file name")
    for option, path in inputs:
        if os.path.exists(path) and os.path.exists(out) and os.path.samefile(path, out):
            raise InputError(f"--out: '{out}' is the {option} file; writing it would overwrite the input")


def check_positive(option: str, value: int | None) -> None:
    """A count option (``--batch_size``, ``--topk``) is a whole number ≥ 1 when given."""
    if value is not None and value < 1:
        raise InputError(f"{option}: {value} must be a whole number ≥ 1")


def _restore(checkpoint: str, compute_dtype: str | None):
    """The checkpoint's model, in ``compute_dtype`` when given (else the run's ``llm_compute_dtype``)."""
    return restore(checkpoint, settings={"llm_compute_dtype": compute_dtype} if compute_dtype else None)


def score_file(checkpoint: str, pairs: str, out: str, batch_size: int | None = None, progress: bool = True,
               compute_dtype: str | None = None) -> int:
    """Score every pair of ``pairs`` with the model of ``checkpoint``; write ``user item score``
    lines to ``out`` in input order. Returns the number of pairs."""
    check_positive("--batch_size", batch_size)
    check_output(out, ("--pairs", pairs), ("--checkpoint", checkpoint))
    scorer = PairScorer(_restore(checkpoint, compute_dtype), batch_size)
    total = _check_tokens(scorer, pairs)

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f, tqdm(total=total, disable=not progress, desc="score", ncols=100) as bar:
            writer = csv.writer(f, delimiter="\t", lineterminator="\n")
            writer.writerow(["user", "item", "score"])
            for _, chunk in read_pairs(pairs):
                users = scorer.ids([r[0] for r in chunk], scorer.uid)
                items = scorer.ids([r[1] for r in chunk], scorer.iid)
                times = np.array([float(r[2]) for r in chunk]) if len(chunk[0]) == 3 else None
                scores = scorer.score_ids(users, items, times)
                writer.writerows((r[0], r[1], f"{s:.6f}") for r, s in zip(chunk, scores))
                bar.update(len(chunk))

    atomic_write(out, write)  # a reader never sees a half-written file
    return total


def recommend(checkpoint: str, users_file: str, candidates: str, topk: int, out: str, progress: bool = True,
              compute_dtype: str | None = None) -> int:
    """Top-``topk`` items per user of ``users_file`` (one token per line) among ``candidates``:
    ``popN`` (the N most popular train items) or a file of item tokens (one per line); items the
    user already interacted with are left out. Writes ``user rank item score`` lines."""
    check_positive("--topk", topk)
    check_output(out, ("--users", users_file), ("--checkpoint", checkpoint), ("--candidates", candidates))
    if not os.path.isfile(users_file):
        raise MissingInputError(f"--users: '{users_file}' not found")
    tokens = [line.strip() for line in open(users_file) if line.strip()]
    if not tokens:
        raise InputError(f"{users_file}: no user tokens; expected one per line")
    restored = _restore(checkpoint, compute_dtype)
    scorer = PairScorer(restored)
    users = scorer.ids(tokens, scorer.uid)
    if (users < 0).any():
        missing = [t for t, u in zip(tokens, users) if u < 0]
        raise InputError(f"{users_file}: {len(missing)} user token(s) the checkpoint's dataset does not know ({', '.join(missing[:5])})")
    pool = _candidates(scorer, restored, candidates)
    lines = 0

    def write(tmp: str) -> None:
        nonlocal lines
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f, delimiter="\t", lineterminator="\n")
            writer.writerow(["user", "rank", "item", "score"])
            for token, user in tqdm(list(zip(tokens, users)), disable=not progress, desc="recommend", ncols=100):
                items = np.setdiff1d(pool, scorer.seen(user))
                scores = scorer.score_ids(np.full(len(items), user), items)
                best = np.argsort(-scores, kind="stable")[:topk]
                writer.writerows((token, rank + 1, scorer.item_tokens[items[i]], f"{scores[i]:.6f}") for rank, i in enumerate(best))
                lines += len(best)

    atomic_write(out, write)
    return lines


def _candidates(scorer: PairScorer, restored: Restored, candidates: str) -> np.ndarray:
    if candidates.startswith("pop") and candidates[3:].isdigit():
        if int(candidates[3:]) < 1:
            raise InputError(f"--candidates: '{candidates}' holds no items; popN needs N ≥ 1")
        return popular_items(restored.splits[0].train_item_count, int(candidates[3:]))
    if not os.path.isfile(candidates):
        raise MissingInputError(f"--candidates: '{candidates}' is neither popN nor a file of item tokens")
    tokens = [line.strip() for line in open(candidates) if line.strip()]
    if not tokens:
        raise InputError(f"{candidates}: no item tokens; expected one per line")
    items = scorer.ids(tokens, scorer.iid)
    if (items < 0).any():
        raise InputError(f"{candidates}: {(items < 0).sum()} item token(s) the checkpoint's dataset does not know")
    return np.unique(items)
