"""Train and evaluate one model, RecBole's ``run_recbole`` for the plugin (without ray)."""
from __future__ import annotations

import contextlib
import glob
import logging
import os
import time
from logging import getLogger

import numpy as np
import torch.distributed
import torch.multiprocessing as mp
from recbole.utils import get_environment, init_logger, init_seed, set_color

from recbole_collm.config import Config
from recbole_collm.data import create_dataset
from recbole_collm.data.utils import data_preparation, is_ranking
from recbole_collm.errors import InputError
from recbole_collm.evaluator.compare import compare_rows
from recbole_collm.files import RunLock, run_is_live
from recbole_collm.model.cf_source import CheckpointSource
from recbole_collm.restore import build_model, restore
from recbole_collm.settings import cache_path, cf_settings
from recbole_collm.utils import get_model, get_trainer


def run_recbole_collm(
    model: str | None = None,
    dataset: str | None = None,
    config_file_list: list[str] | None = None,
    config_dict: dict | None = None,
    saved: bool = True,
) -> dict:
    """Train ``model`` on ``dataset``, then evaluate the best checkpoint on the test split.

    Returns RecBole's result dict: best_valid_score, valid_score_bigger, best_valid_result,
    test_result, plus ``model_file`` (the saved checkpoint, when ``saved``), ``train_seconds``,
    ``test_seconds`` and ``test_rows`` (per-row tokens, labels, scores; labeled evaluation).
    """
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    init_logger(config)
    logger = getLogger()
    logger.info(config)
    data, (train_data, valid_data, test_data), model_obj, trainer = prepare(config)
    resume = find_resume_file(config)
    if resume:
        trainer.resume_checkpoint(resume, dataset=train_data._dataset)
    with RunLock(trainer.saved_model_file) if saved and trainer.main_process else contextlib.nullcontext():
        start = time.perf_counter()
        best_valid_score, best_valid_result = trainer.fit(
            train_data, valid_data, saved=saved, show_progress=config["show_progress"]
        )
        train_seconds = time.perf_counter() - start
        start = time.perf_counter()
        test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
        test_seconds = time.perf_counter() - start
    source_result = evaluate_source(trainer, model_obj, test_data, config)
    stage_results = trainer.evaluate_stages(test_data) if saved and hasattr(trainer, "evaluate_stages") else {}

    environment = get_environment(config)
    logger.info("The running environment of this training is as follows:\n" + environment.draw())
    logger.info(set_color("best valid ", "yellow") + f": {format_result(best_valid_result)}")
    logger.info(set_color("test result", "yellow") + f": {format_result(test_result)}")
    comparison = None
    if source_result is not None:
        logger.info(set_color("collaborative source alone, same test rows", "yellow") + f": {format_result(source_result)}")
        if getattr(test_result, "rows", None) is not None and getattr(source_result, "rows", None) is not None:
            comparison = compare_rows(test_result.rows, source_result.rows, seed=config["seed"])
            for line in comparison:
                logger.info(set_color(f"{config['model']} vs its source", "yellow") + f": {line}")
    stage_comparisons = {}
    for stage, result in stage_results.items():
        logger.info(set_color(f"its {stage} stage alone, same test rows", "yellow") + f": {format_result(result)}")
        if getattr(test_result, "rows", None) is not None and getattr(result, "rows", None) is not None:
            stage_comparisons[stage] = compare_rows(test_result.rows, result.rows, seed=config["seed"])
            for line in stage_comparisons[stage]:
                logger.info(set_color(f"{config['model']} vs its {stage} stage", "yellow") + f": {line}")
    return {
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
        "model_file": trainer.saved_model_file if saved else None,
        "train_seconds": train_seconds,  # fit, validation included
        "test_seconds": test_seconds,  # test evaluation, checkpoint loading included
        "test_rows": _test_rows(data, getattr(test_result, "rows", None)),
        "source_test_result": source_result,
        "source_comparison": comparison,  # paired bootstrap over users (AUC, UAUC), None without a source
        "stage_test_results": stage_results,  # CoLLM: its LoRA stage's best checkpoint on the same test rows
        "stage_comparisons": stage_comparisons,  # paired bootstrap over users against each of them
        "history": getattr(trainer, "history", None),  # LLM models: per epoch, train rows and validation
    }


def format_result(result: dict | None) -> str:
    """``metric : value`` pairs as RecBole logs them, numbers to 4 decimals (not ``np.float64(...)``)."""
    if not result:
        return str(result)
    return "    ".join(f"{k} : {v:.4f}" if isinstance(v, (float, np.floating)) else f"{k} : {v}" for k, v in result.items())


def run(
    model: str,
    dataset: str,
    config_file_list: list[str] | None = None,
    config_dict: dict | None = None,
    saved: bool = True,
    nproc: int = 1,
    world_size: int = -1,
    ip: str = "localhost",
    port: str = "5678",
    group_offset: int = 0,
) -> dict | None:
    """RecBole's ``run`` for the plugin: one process, or ``nproc`` processes on this machine
    (``world_size`` over several machines, each starting its ``group_offset``) on RecBole's DDP —
    gloo on the CPU, NCCL on GPUs. Each process trains on its shard of every batch (the global
    batch is ``train_batch_size``); evaluation gathers the shards, so every row counts once (a
    ranking evaluation is refused: RecBole would average its metrics per process). Returns
    process 0's result."""
    if nproc == 1 and world_size <= 0:
        return run_recbole_collm(model, dataset, config_file_list, config_dict, saved)
    if is_ranking(Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)):
        raise InputError("eval_args.mode: a ranking evaluation (uniN, popN, full) under several processes would average "
                         "each process's metrics, as RecBole does, not compute them once over every query; train with "
                         "several processes on labeled rows, or rank with one process")
    queue = mp.get_context("spawn").SimpleQueue()
    config_dict = {**(config_dict or {}), "world_size": world_size if world_size > 0 else nproc, "ip": ip,
                   "port": str(port), "nproc": nproc, "offset": group_offset}
    mp.spawn(_run_rank, args=(model, dataset, config_file_list, config_dict, saved, queue), nprocs=nproc, join=True)
    return None if queue.empty() else queue.get()


def _run_rank(rank: int, model, dataset, config_file_list, config_dict, saved, queue) -> None:
    result = run_recbole_collm(model, dataset, config_file_list, {**config_dict, "local_rank": rank}, saved)
    if rank == 0:
        queue.put(result)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def objective_function(config_dict: dict | None = None, config_file_list: list[str] | None = None, saved: bool = True,
                       model: str | None = None, dataset: str | None = None) -> dict:
    """RecBole's ``objective_function`` for ``recbole.trainer.HyperTuning``, on the plugin: one run
    with a trial's settings (``config_dict``) over the fixed ones, judged by its best validation
    score. The test split is never evaluated (``test_result`` is empty): settings are chosen on
    validation rows only, and the chosen run's test figure is taken by a separate run."""
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    logger = getLogger()
    for handler in logger.handlers[:]:  # RecBole's way: a trial logs errors only
        logger.removeHandler(handler)
    logging.basicConfig(level=logging.ERROR)
    _, (train_data, valid_data, _), _, trainer = prepare(config)
    best_valid_score, best_valid_result = trainer.fit(train_data, valid_data, verbose=False, saved=saved,
                                                      show_progress=config["show_progress"])
    return {
        "model": config["model"],
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": {},
    }


def evaluate_source(trainer, model, test_data, config) -> dict | None:
    """A CoLLM model's collaborative checkpoint scored alone on the same test rows with the same
    evaluator (labeled evaluation): the baseline CoLLM must beat. None for other models."""
    source = getattr(getattr(model, "cie", None), "source", None)
    if not isinstance(source, CheckpointSource) or is_ranking(config):
        return None
    trainer.model = source
    try:
        return trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    finally:
        trainer.model = model


def prepare(config) -> tuple:
    """``config`` → ``(dataset, (train, valid, test) loaders, model, trainer)``, seeded as RecBole
    seeds a run: the one path from settings to a trainable model (also for the CF model that
    ``cf_checkpoint: auto`` trains, which is resolved here, before the model is built; the model
    is handed its restored collaborative source by :func:`recbole_collm.restore.build_model`)."""
    logger = getLogger()
    model_class = get_model(config["model"])
    if config["cf_checkpoint"] == "auto" and getattr(model_class, "reads_cf_checkpoint", False):
        # the run's config records the file it used: a reload reads the same CF model
        config["cf_checkpoint"] = auto_cf_checkpoint(config)
    init_seed(config["seed"], config["reproducibility"])
    data = create_dataset(config)
    logger.info(data)
    loaders = data_preparation(config, data)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = build_model(config, loaders[0]._dataset).to(config["device"])
    logger.info(model)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    return data, loaders, model, trainer


def auto_cf_checkpoint(config) -> str:
    """The cached checkpoint of ``cf_model`` for this dataset and data settings, trained first
    when there is none (:func:`recbole_collm.settings.cf_settings`), with ``cf_model_settings`` above its
    own (e.g. a RecBole model's ``epochs`` on a CPU budget). The seed is re-initialised
    afterwards, so the caller's run is the same whether the checkpoint was cached or not."""
    name = config["cf_model"]  # one of the CF sources (recbole_collm.settings checked it)
    overrides = {"checkpoint_dir": config["checkpoint_dir"], "show_progress": False, "state": config["state"],
                 "train_rows_limit": None, "eval_rows_limit": None, **cf_settings(config), **(config["cf_model_settings"] or {})}
    cf_config = Config(model=name, dataset=config["dataset"], config_dict=overrides, cmd_line=False)
    path = cache_path(cf_config)
    logger = getLogger()
    if os.path.isfile(path):
        logger.info(f"cf_checkpoint: auto -> {path} (cached {name})")
        init_seed(config["seed"], config["reproducibility"])  # as after training one: same run either way
        return path
    logger.info(f"cf_checkpoint: auto -> training {name} on {config['dataset']} for the CIE")
    _, (train_data, valid_data, _), _, trainer = prepare(cf_config)
    trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    os.replace(trainer.saved_model_file, path)  # atomic: a reader sees the whole file or none
    if os.path.isfile(trainer.last_checkpoint_file):  # its resume file: the run is complete
        os.remove(trainer.last_checkpoint_file)
    init_seed(config["seed"], config["reproducibility"])
    logger.info(f"cf_checkpoint: auto -> {path} ({name} trained)")
    return path


def _test_rows(dataset, rows: dict | None) -> dict | None:
    """The test rows' external user/item tokens, labels and scores (labeled evaluation only):
    what ensembles and per-row comparisons between runs need."""
    if rows is None:
        return None
    return {
        "user": dataset.id2token(dataset.uid_field, rows["uid"]),
        "item": dataset.id2token(dataset.iid_field, rows["iid"]),
        "label": rows["label"],
        "score": rows["score"],
    }


def find_resume_file(config) -> str | None:
    """``resume: <file>`` as given; ``resume: auto`` = the newest ``<model>-*-last.pth`` in
    ``checkpoint_dir`` whose run is not still going (none: start afresh)."""
    resume = config["resume"]  # an existing file, auto or empty (checked when the Config was built)
    if not resume:
        return None
    if resume != "auto":
        return str(resume)
    candidates = glob.glob(os.path.join(config["checkpoint_dir"], f"{config['model']}-*-last.pth"))
    candidates = [c for c in candidates if not run_is_live(c)]  # a live run's files stay its own
    return max(candidates, key=os.path.getmtime) if candidates else None


def load_data_and_model(model_file: str):
    """Rebuild config, data and model from a checkpoint this plugin (or RecBole) saved, with the
    loaders seeded as RecBole's ``load_data_and_model`` seeds them.

    The checkpoint pickles the Config, so it is fully unpickled: pass only files you trust.
    Returns ``(config, model, dataset, train_data, valid_data, test_data)``.
    """
    restored = restore(model_file, loaders=True)
    init_logger(restored.config)
    model = restored.model.to(restored.config["device"])
    return (restored.config, model, restored.dataset, *restored.splits)
