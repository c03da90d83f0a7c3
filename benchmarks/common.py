"""What the benchmark scripts share: the repository paths, the command-line guard RecBole needs,
the check for the paper's ML-1M split, number formatting, building a seeded LLM model with its
splits, and measuring peak memory."""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"  # the CoLLM paper's splits (never committed)


def parse_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The script's own arguments; then ``sys.argv`` is cut to the program name, because
    RecBole's Config reads ``--key=value`` pairs from it and would take the script's as settings."""
    args = parser.parse_args(sys.argv[1:])
    sys.argv = sys.argv[:1]
    return args


def available(datasets: list[str]) -> list[str]:
    """``datasets`` without ml-1m-collm when ``../shared/data`` lacks it (said, not silent)."""
    if "ml-1m-collm" in datasets and not (SHARED_DATA / "ml-1m-collm").is_dir():
        print(f"ml-1m-collm: skipped, the paper's split is not at {SHARED_DATA / 'ml-1m-collm'} (docs/data.md)")
        return [d for d in datasets if d != "ml-1m-collm"]
    return list(datasets)


def fmt(value) -> str:
    """A metric with four decimals; n/a for a missing or undefined one."""
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{float(value):.4f}"


def build_llm(model_name: str, dataset: str, settings: dict) -> tuple:
    """``(config, model, train, valid, test)``: the Config with ``settings`` (all rows unless
    they say otherwise, quiet), the dataset's splits and the model, seeded (torch seed 0)."""
    import torch

    from recbole_collm import Config
    from recbole_collm.data import CollmDataset
    from recbole_collm.restore import build_model

    config = Config(model=model_name, dataset=dataset, config_dict={
        "train_rows_limit": None, "eval_rows_limit": None, "state": "WARNING", "show_progress": False, **settings})
    train, valid, test = CollmDataset(config).build()
    torch.manual_seed(0)
    model = build_model(config, train).to(config["device"])
    return config, model, train, valid, test


class PeakMemory:
    """Peak memory of the work inside the ``with`` block: ``mib`` above the level before it,
    ``total_mib`` in all — GPU memory allocated on CUDA, else the process's resident memory
    (sampled every 2 ms by a thread)."""

    def __enter__(self):
        import torch

        self.cuda = torch.cuda.is_available()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return self
        import psutil

        self.process = psutil.Process()
        self.base = self.peak = self.process.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc):
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            self.total_mib = torch.cuda.max_memory_allocated() / 2**20
            self.mib = self.total_mib - self.base / 2**20
        else:
            self.running = False
            self.thread.join()
            self.peak = max(self.peak, self.process.memory_info().rss)
            self.total_mib = self.peak / 2**20
            self.mib = (self.peak - self.base) / 2**20


def timed(fn, repeats: int = 1) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` calls, the GPU synchronised around each."""
    import torch

    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
