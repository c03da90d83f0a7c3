"""Pairs per second of ``recbole-collm score`` from a saved model, and the process's peak memory.

    python -m benchmarks.scoring_speed --checkpoint saved/MF-....pth [--pairs 100000]
    python -m benchmarks.scoring_speed --checkpoint saved/CoLLM-....pth --pairs 2000

The pairs are the checkpoint dataset's test rows (with their timestamps), repeated in a seeded
random order until there are ``--pairs`` of them, written to a file; then the file is scored as the
command line scores it (token check, streaming, input order). Prints pairs/s and peak RSS.
"""
from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from benchmarks.common import parse_args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--pairs", type=int, default=100_000)
    args = parse_args(parser)

    import numpy as np

    from recbole_collm.data import create_dataset
    from recbole_collm.files import read_checkpoint
    from recbole_collm.scoring import score_file

    config = read_checkpoint(args.checkpoint)["config"]  # the pairs need the data, not the model
    dataset = create_dataset(config)
    test = dataset.build()[2].inter_feat
    order = np.random.default_rng(0).integers(0, len(test), size=args.pairs)
    users = dataset.id2token(dataset.uid_field, test[dataset.uid_field].numpy())
    items = dataset.id2token(dataset.iid_field, test[dataset.iid_field].numpy())
    times = test[config["TIME_FIELD"]].numpy()
    with tempfile.TemporaryDirectory() as folder:
        pairs, out = Path(folder) / "pairs.tsv", Path(folder) / "scores.tsv"
        pairs.write_text("".join(f"{users[k]}\t{items[k]}\t{times[k]:.17g}\n" for k in order))
        start = time.perf_counter()
        count = score_file(args.checkpoint, str(pairs), str(out), progress=True)
        seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    print(f"{Path(args.checkpoint).name}: {count} pairs in {seconds:.1f} s = {count / seconds:.1f} pairs/s "
          f"(model load and token check included); peak RSS {peak:.2f} GiB")


if __name__ == "__main__":
    main()
