"""Scoring a file of pairs and recommending from a saved model: the same scores as the model on the
same rows, in input order, histories as the dataset builds them, clear errors for unknown tokens."""
import csv
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from recbole_collm import run_recbole_collm
from recbole_collm.errors import InputError
from recbole_collm.restore import restore
from recbole_collm.scoring import PairScorer, recommend, score_file
from tests.conftest import ROOT, TINY_YAML


def read_tsv(path):
    with open(path) as f:
        return list(csv.reader(f, delimiter="\t"))


def write_pairs(path, dataset, split, order, times=True):
    """The split's rows as a pairs file, with the timestamps the data file has."""
    rows = split.inter_feat
    users = dataset.id2token("user_id", rows["user_id"].numpy())
    items = dataset.id2token("item_id", rows["item_id"].numpy())
    exact = exact_times(dataset, split)
    with open(path, "w") as f:
        f.write("user_id\titem_id\ttimestamp\n" if times else "")
        for k in order:
            f.write(f"{users[k]}\t{items[k]}" + (f"\t{exact[k]:.17g}\n" if times else "\n"))


def test_history_of_a_pair_is_the_datasets_history(mf_checkpoint):
    restored = restore(mf_checkpoint)
    scorer = PairScorer(restored)
    test = restored.splits[2]
    rows = test.inter_feat
    exact = exact_times(restored.dataset, test)
    history, length = scorer.history(rows["user_id"].numpy(), exact)
    np.testing.assert_array_equal(length, rows["item_length"].numpy())
    np.testing.assert_array_equal(history, rows["item_id_list"].numpy())
    # without a time: every positive of the user, the latest last
    history, length = scorer.history(rows["user_id"].numpy()[:1], None)
    feat = restored.dataset.inter_feat
    user = rows["user_id"][0].item()
    mine = feat[(feat["user_id"] == user) & (feat["label"] > 0.5)]
    latest = mine["item_id"][torch.argsort(mine["timestamp"], stable=True)][-scorer.max_len:]
    assert history[0, : length[0]].tolist() == latest.tolist()


def test_pairs_at_a_tied_time_score_with_their_dataset_rows_history(tmp_path):
    """Two positives of one user at the same second: neither is the other's history, in the
    dataset's rows and in pairs scored at that time (one rule, data/history.py)."""
    data = tmp_path / "data"
    shutil.copytree(ROOT / "tests" / "data" / "tiny", data / "tiny")
    inter = data / "tiny" / "tiny.inter"
    frame = pd.read_csv(inter, sep="\t")
    positive = frame[frame["rating:float"] >= 4]
    user = positive["user_id:token"].value_counts().index[0]
    mine = positive[positive["user_id:token"] == user].sort_values("timestamp:float")
    tied = mine.index[-3:-1]  # the second- and third-latest positives share a second
    frame.loc[tied[0], "timestamp:float"] = frame.loc[tied[1], "timestamp:float"]
    frame.to_csv(inter, sep="\t", index=False)
    result = run_recbole_collm(model="MF", dataset="tiny", config_file_list=[TINY_YAML], config_dict={
        "data_path": str(data), "epochs": 1, "checkpoint_dir": str(tmp_path / "saved"), "state": "WARNING"})
    restored = restore(result["model_file"])
    scorer = PairScorer(restored)
    uid, second = restored.dataset.token2id("user_id", str(user)), float(frame.loc[tied[1], "timestamp:float"])
    tied_histories = []
    for split in restored.splits:
        rows, exact = split.inter_feat, exact_times(restored.dataset, split)
        history, length = scorer.history(rows["user_id"].numpy(), exact)
        np.testing.assert_array_equal(length, rows["item_length"].numpy())
        np.testing.assert_array_equal(history, rows["item_id_list"].numpy())
        at = (rows["user_id"].numpy() == uid) & (exact == second)
        tied_histories += [history[r, : length[r]].tolist() for r in np.flatnonzero(at)]
    # both tied rows found, each with the history before that second: the same, holding neither
    assert len(tied_histories) == 2 and tied_histories[0] == tied_histories[1]


def test_pair_history_uses_exact_times_not_recboles_float32_copies(mf_checkpoint):
    """A positive at epoch second t is history for a pair one second later and not for one at t,
    although RecBole's float32 copy of t is up to 64 s off at 1e9 s."""
    restored = restore(mf_checkpoint)
    scorer = PairScorer(restored)
    source = restored.dataset.positive_history
    rounded = source.times.astype(np.float32).astype(np.float64)
    k = int(np.flatnonzero(rounded > source.times + 1)[0])  # a positive float32 rounds up
    user, item, t = source.users[k], source.items[k], source.times[k]
    history, length = scorer.history(np.array([user, user]), np.array([t, t + 1]))
    assert item not in history[0, : length[0]]
    assert history[1, length[1] - 1] == item


def exact_times(dataset, split) -> np.ndarray:
    """The split's rows' timestamps as the file has them (RecBole's tensors hold float32 copies:
    a row is found by user, item and that copy)."""
    frame = pd.read_csv(f"{dataset.dataset_path}/{dataset.dataset_name}.inter", sep="\t", engine="python")
    frame.columns = [c.split(":")[0] for c in frame.columns]
    times = {}
    for u, i, t in zip(frame["user_id"].astype(str), frame["item_id"].astype(str), frame["timestamp"]):
        times.setdefault((u, i, float(np.float32(t))), []).append(float(t))
    assert all(len(v) == 1 for v in times.values())
    users = dataset.id2token("user_id", split.inter_feat["user_id"].numpy())
    items = dataset.id2token("item_id", split.inter_feat["item_id"].numpy())
    rounded = split.inter_feat["timestamp"].numpy().astype(np.float64)
    return np.array([times[(u, i, t)][0] for u, i, t in zip(users, items, rounded)], dtype=np.float64)


def test_score_file_gives_the_models_scores_in_input_order(mf_checkpoint, tmp_path):
    restored = restore(mf_checkpoint)
    test = restored.splits[2]
    rows = test.inter_feat
    order = np.random.default_rng(0).permutation(len(test))
    write_pairs(tmp_path / "pairs.tsv", restored.dataset, test, order)
    assert score_file(mf_checkpoint, str(tmp_path / "pairs.tsv"), str(tmp_path / "scores.tsv"), progress=False) == len(test)
    out = read_tsv(tmp_path / "scores.tsv")
    assert out[0] == ["user", "item", "score"]
    users = restored.dataset.id2token("user_id", rows["user_id"].numpy())
    assert [r[0] for r in out[1:]] == [users[k] for k in order]
    with torch.no_grad():
        expected = restored.model.eval().predict(rows).numpy()[order]
    np.testing.assert_allclose([float(r[2]) for r in out[1:]], expected, atol=2e-6)


def test_collm_pairs_score_as_in_its_own_test_evaluation(tiny_llm_dir, mf_checkpoint, tmp_path):
    """The LLM path: a CoLLM checkpoint scores the pairs of its test rows as its evaluation did."""
    result = run_recbole_collm(model="CoLLM", dataset="tiny", config_file_list=[TINY_YAML], config_dict={
        "llm_path": str(tiny_llm_dir), "train_rows_limit": 16, "eval_rows_limit": 24, "epochs": 1, "stage": "cie",
        "cf_checkpoint": mf_checkpoint, "checkpoint_dir": str(tmp_path), "state": "WARNING", "show_progress": False,
        "warmup_steps": 0, "learning_rate": 0.05})
    restored = restore(result["model_file"])
    test = restored.splits[2]
    write_pairs(tmp_path / "pairs.tsv", restored.dataset, test, range(len(test)))
    score_file(result["model_file"], str(tmp_path / "pairs.tsv"), str(tmp_path / "scores.tsv"), progress=False)
    got = np.array([float(r[2]) for r in read_tsv(tmp_path / "scores.tsv")[1:]])
    np.testing.assert_allclose(got, np.asarray(result["test_rows"]["score"]), atol=1e-5)


def test_unknown_tokens_are_one_error_with_count_and_lines(mf_checkpoint, tmp_path):
    (tmp_path / "pairs.tsv").write_text("1\t1\nnobody\t1\n2\tnothing\n2\t2\n")
    with pytest.raises(InputError, match=r"pairs.tsv: 2 pair\(s\) with a user or item token .* \(lines 2, 3\)$"):
        score_file(mf_checkpoint, str(tmp_path / "pairs.tsv"), str(tmp_path / "scores.tsv"), progress=False)
    assert not (tmp_path / "scores.tsv").exists()
    (tmp_path / "pairs.tsv").write_text("1\t1\t5\n1\n")
    with pytest.raises(InputError, match=r"line 2: expected 'user<TAB>item\[<TAB>timestamp\]', got 1 fields"):
        score_file(mf_checkpoint, str(tmp_path / "pairs.tsv"), str(tmp_path / "scores.tsv"), progress=False)


def test_recommend_ranks_unseen_popular_items_by_score(mf_checkpoint, tmp_path):
    restored = restore(mf_checkpoint)
    scorer = PairScorer(restored)
    tokens = list(restored.dataset.field2id_token["user_id"][1:4])
    (tmp_path / "users.txt").write_text("\n".join(tokens) + "\n")
    count = recommend(mf_checkpoint, str(tmp_path / "users.txt"), "pop15", 5, str(tmp_path / "recs.tsv"), progress=False)
    out = read_tsv(tmp_path / "recs.tsv")[1:]
    train_count = restored.splits[0].train_item_count
    pool = set((np.argsort(-train_count[1:], kind="stable")[:15] + 1).tolist())
    unseen = {token: pool - set(scorer.seen(scorer.user_ids[token]).tolist()) for token in tokens}
    assert count == len(out) == sum(min(5, len(u)) for u in unseen.values())
    for token in tokens:
        user = scorer.user_ids[token]
        mine = [r for r in out if r[0] == token]
        items = [scorer.item_ids[r[2]] for r in mine]
        assert [int(r[1]) for r in mine] == list(range(1, min(5, len(unseen[token])) + 1))
        assert set(items) <= unseen[token]
        scores = [float(r[3]) for r in mine]
        assert scores == sorted(scores, reverse=True)
        every = scorer.score_ids(np.full(len(unseen[token]), user), np.array(sorted(unseen[token])))
        assert scores[0] == pytest.approx(float(every.max()), abs=1e-6)


def test_recommend_ranks_a_file_of_candidates_but_the_users_own_items(mf_checkpoint, tmp_path):
    restored = restore(mf_checkpoint)
    scorer = PairScorer(restored)
    users = list(restored.dataset.field2id_token["user_id"][1:3])
    items = list(restored.dataset.field2id_token["item_id"][1:13])
    (tmp_path / "users.txt").write_text("\n".join(users) + "\n")
    (tmp_path / "items.txt").write_text("\n".join(items + items[:2]) + "\n")  # a repeated token counts once
    count = recommend(mf_checkpoint, str(tmp_path / "users.txt"), str(tmp_path / "items.txt"), 20, str(tmp_path / "recs.tsv"),
                      progress=False)
    out = read_tsv(tmp_path / "recs.tsv")[1:]
    expected = []
    for token in users:
        user = scorer.user_ids[token]
        unseen = np.array(sorted(set(scorer.item_ids[i] for i in items) - set(scorer.seen(user).tolist())))
        scores = scorer.score_ids(np.full(len(unseen), user), unseen)
        expected += [[token, str(rank + 1), restored.dataset.id2token("item_id", int(item))]
                     for rank, item in enumerate(unseen[np.argsort(-scores, kind="stable")])]
    assert count == len(out) == len(expected) and [r[:3] for r in out] == expected


def test_command_line_scores_a_file(mf_checkpoint, tmp_path):
    (tmp_path / "pairs.tsv").write_text("1\t1\n2\t2\n")
    out = subprocess.run([sys.executable, "-m", "recbole_collm", "score", f"--checkpoint={mf_checkpoint}",
                          f"--pairs={tmp_path / 'pairs.tsv'}", f"--out={tmp_path / 'scores.tsv'}"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "scored 2 pairs" in out.stdout and len(read_tsv(tmp_path / "scores.tsv")) == 3
    out = subprocess.run([sys.executable, "-m", "recbole_collm", "score", f"--checkpoint={mf_checkpoint}",
                          f"--pairs={tmp_path / 'none.tsv'}", f"--out={tmp_path / 'x.tsv'}"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 2 and out.stderr.strip().endswith("none.tsv' not found")


def test_timestamps_on_some_lines_only_are_one_error(mf_checkpoint, tmp_path):
    (tmp_path / "pairs.tsv").write_text("1\t1\t1000001402\n2\t2\n")
    with pytest.raises(InputError, match="pairs.tsv: give a timestamp on every line or on none$"):
        score_file(mf_checkpoint, str(tmp_path / "pairs.tsv"), str(tmp_path / "scores.tsv"), progress=False)
