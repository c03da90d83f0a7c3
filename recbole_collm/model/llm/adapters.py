"""The tunable parts of an LLM recommender — LoRA and its small modules (CoLLM's CIE, A-LLMRec's
aligner and projector, CLLM4Rec's user/item tokens) — as the model's own state: saved and loaded in
their own formats (peft's adapter folder, safetensors; the save/load symmetry of peft), and the only
weights its RecBole checkpoints hold (never the LLM)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors.torch import load_file, save_file

from recbole_collm.errors import InputError, MissingInputError
from recbole_collm.files import atomic_write, atomic_write_dir, read_checkpoint


class AdaptersMixin:
    """For a model with ``llm`` (peft-wrapped when ``uses_lora``) and the submodules named in
    ``tunable_modules`` (an attribute may be None: CoLLM's ``cie`` without ID slots)."""

    tunable_modules: tuple[str, ...] = ("cie",)

    def _tunable_parts(self) -> dict:
        return {name: getattr(self, name) for name in self.tunable_modules if getattr(self, name, None) is not None}

    def load_lora(self, path: str) -> None:
        """Start from the LoRA weights of an earlier stage-1 run: its ``-adapter`` folder (peft
        format, safetensors, nothing unpickled) or its ``.pth`` checkpoint (fully unpickled: only
        files you trust)."""
        if os.path.isdir(path):
            from peft import set_peft_model_state_dict  # lazy, as every transformers/peft import (backbone.py)

            weights = os.path.join(path, "adapter_model.safetensors")
            if not os.path.isfile(weights):
                raise MissingInputError(f"lora_checkpoint: {weights} not found (expected a peft adapter folder)")
            result = set_peft_model_state_dict(self.llm, load_file(weights))
            missing = [k for k in result.missing_keys if "lora_" in k]
            if result.unexpected_keys or missing:
                raise InputError(f"lora_checkpoint: {path} does not match this LLM and lora_* settings")
            return
        state = read_checkpoint(path)["state_dict"]
        lora = {k: v for k, v in state.items() if "lora_" in k}
        own = {k for k in self.state_dict() if "lora_" in k}
        if not lora or set(lora) != own:
            raise InputError(f"lora_checkpoint: {path} holds no LoRA weights matching this LLM and lora_* settings")
        super().load_state_dict(lora, strict=False)

    # --- adapters: the tunable parts in their own formats ---------------------------------------
    def save_adapters(self, stem: str, run: dict | None = None) -> None:
        """``<stem>-adapter/`` (peft's folder: config + safetensors) when the model has LoRA,
        ``<stem>-<module>.safetensors`` per tunable module (``<stem>-cie.safetensors`` for CoLLM)
        and, given the ``run`` that built the model (dataset, settings, token maps: the trainer's),
        ``<stem>-config.json``: the model's name and stage beside it, so
        :func:`recbole_collm.restore.restore_adapters` rebuilds the whole model from these files
        without unpickling anything (peft's config beside its weights). Each written atomically."""
        if self.uses_lora:
            atomic_write_dir(f"{stem}-adapter", self.llm.save_pretrained)
        for name, module in self._tunable_parts().items():
            weights = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
            atomic_write(f"{stem}-{name}.safetensors", lambda tmp, w=weights: save_file(w, tmp))
        if run is not None:
            record = json.dumps({"model": type(self).__name__, **run, "other_parameter": self.other_parameter()}, indent=1, default=str)
            atomic_write(f"{stem}-config.json", lambda tmp: Path(tmp).write_text(record + "\n"))

    def load_adapters(self, stem: str) -> None:
        """What :meth:`save_adapters` wrote for ``stem``: the LoRA adapter and each module's weights."""
        if self.uses_lora:
            self.load_lora(f"{stem}-adapter")
        for name, module in self._tunable_parts().items():
            path = f"{stem}-{name}.safetensors"
            if not os.path.isfile(path):
                raise MissingInputError(f"{path}: not found (expected the {name} weights beside the checkpoint)")
            module.load_state_dict(load_file(path, device=str(self.device)))

    # --- small checkpoints --------------------------------------------------------------------
    def other_parameter(self) -> dict:
        """RecBole's place for non-weight state: the stage, so a reloaded model scores with the
        prompts it was trained on (a ``stage: all`` checkpoint is a CIE-stage model)."""
        return {"stage": self.stage}

    def load_other_parameter(self, para: dict | None) -> None:
        if para and para.get("stage"):
            self.set_stage(para["stage"])

    def state_dict(self, *args, **kwargs):
        """Only what training can change (LoRA and the tunable modules): a checkpoint never holds
        the LLM."""
        full = super().state_dict(*args, **kwargs)
        return type(full)((k, v) for k, v in full.items() if "lora_" in k or k.split(".")[0] in self.tunable_modules)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        expected = set(self.state_dict())
        missing, unexpected = expected - set(state_dict), set(state_dict) - expected
        if strict and (missing or unexpected):
            raise RuntimeError(
                f"{type(self).__name__} checkpoint does not match the model: missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}"
            )
        return super().load_state_dict(state_dict, strict=False, assign=assign)
