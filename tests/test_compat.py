"""The shims that keep RecBole 1.2.1 working on numpy 2, scipy >= 1.13 and torch >= 2.6."""
import subprocess
import sys

import numpy as np
import scipy.sparse as sp
import torch


def test_numpy_aliases_restored():
    assert np.float_ is np.float64
    assert np.unicode_ is np.str_
    assert np.complex_ is np.complex128
    assert np.long is np.int_


def test_dok_update_matches_coo_construction():
    data = {(0, 2): 1.0, (1, 0): 1.0, (2, 1): 1.0}
    dok = sp.dok_matrix((3, 3), dtype=np.float32)
    dok._update(data)
    expected = sp.coo_matrix(([1.0] * 3, ([0, 1, 2], [2, 0, 1])), shape=(3, 3)).toarray()
    np.testing.assert_array_equal(dok.toarray(), expected)


def test_import_does_not_pull_ray():
    code = "import sys, recbole_collm, recbole_collm.quick_start; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_ddp_config_on_cpu_uses_gloo(tmp_path):
    """RecBole's DDP path hard-codes NCCL/CUDA; on CPU the plugin's Config initialises gloo."""
    import socket

    from tests.conftest import tiny_config

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tiny_config(local_rank=0, world_size=1, nproc=1, offset=0, ip="127.0.0.1", port=port)
    try:
        assert torch.distributed.get_backend() == "gloo"
        assert config["device"] == torch.device("cpu")
        assert config["single_spec"] is False
    finally:
        torch.distributed.destroy_process_group()


def test_a_recbole_sequential_model_leaves_anomaly_detection_off():
    # RecBole's sine.py turns it on when imported, and importing SASRec imports it; a fresh
    # process, so that no earlier test has imported it already
    code = ("import recbole_collm, torch; from recbole_collm.utils import get_model; get_model('SASRec'); "
            "import recbole.model.sequential_recommender.sine; print(torch.is_anomaly_enabled())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    code = "import torch, recbole.model.sequential_recommender; print(torch.is_anomaly_enabled())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"  # what the shim undoes (if RecBole stops doing it, drop the shim)


def test_recboles_exhaustive_search_gets_the_generator_hyperopt_samples_with():
    import numpy as np
    import recbole.trainer.hyper_tuning as hyper_tuning

    rng = hyper_tuning.np.random.RandomState(7)
    assert isinstance(rng, np.random.Generator)
    assert rng.integers(0, 1000) == np.random.default_rng(7).integers(0, 1000)
    assert hyper_tuning.np.float64 is np.float64  # the rest of numpy as it is


def test_recboles_ensure_dir_tolerates_a_folder_made_in_between(tmp_path, monkeypatch):
    import os

    import recbole.trainer.trainer as recbole_trainer

    folder = tmp_path / "saved"
    folder.mkdir()  # another process made it between this process's check and its makedirs:
    monkeypatch.setattr(os.path, "exists", lambda path: False)  # the check saw no folder
    recbole_trainer.ensure_dir(str(folder))
    monkeypatch.undo()
    recbole_trainer.ensure_dir(str(tmp_path / "new"))
    assert (tmp_path / "new").is_dir()


def test_the_cache_argument_is_named_as_the_decoders_release_reads_it():
    from transformers.modeling_outputs import BaseModelOutputWithPast

    from recbole_collm.compat import cache_kwargs, output_cache

    class Older(torch.nn.Module):  # a 5.x decoder from before the rename
        def forward(self, inputs_embeds=None, past_key_values=None, use_cache=None):
            return BaseModelOutputWithPast(last_hidden_state=inputs_embeds, past_key_values=past_key_values)

    class Newer(torch.nn.Module):
        def forward(self, inputs_embeds=None, cache=None, use_cache=None):
            return {"last_hidden_state": inputs_embeds, "cache": cache}

    marker = object()
    assert cache_kwargs(Older(), marker) == {"past_key_values": marker}
    assert cache_kwargs(Newer(), marker) == {"cache": marker}
    assert output_cache(Newer()(**cache_kwargs(Newer(), marker))) is marker
