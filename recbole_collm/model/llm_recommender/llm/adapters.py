"""The tunable parts of an LLM recommender — LoRA and the CIE — as the model's own state: saved
and loaded in their own formats (peft's adapter folder, safetensors; the save/load symmetry of
peft), and the only weights its RecBole checkpoints hold (never the LLM)."""
from __future__ import annotations

import os

from recbole_collm.checkpoint import atomic_write, atomic_write_dir, read_checkpoint
from recbole_collm.errors import InputError, MissingInputError


class AdaptersMixin:
    """For a model with ``llm`` (peft-wrapped when ``uses_lora``) and ``cie`` (None without ID
    slots)."""

    def load_lora(self, path: str) -> None:
        """Start from the LoRA weights of an earlier stage-1 run: its ``-adapter`` folder (peft
        format, safetensors, nothing unpickled) or its ``.pth`` checkpoint (fully unpickled: only
        files you trust)."""
        if os.path.isdir(path):
            from peft import set_peft_model_state_dict
            from safetensors.torch import load_file

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
    def save_adapters(self, stem: str) -> None:
        """``<stem>-adapter/`` (peft's folder: config + safetensors) when the model has LoRA, and
        ``<stem>-cie.safetensors`` when it has ID slots; each written atomically. Loadable without
        unpickling anything, by :meth:`load_adapters` or by peft itself."""
        if self.uses_lora:
            atomic_write_dir(f"{stem}-adapter", self.llm.save_pretrained)
        if self.cie is not None:
            from safetensors.torch import save_file

            cie = {k: v.detach().contiguous().cpu() for k, v in self.cie.state_dict().items()}
            atomic_write(f"{stem}-cie.safetensors", lambda tmp: save_file(cie, tmp))

    def load_adapters(self, stem: str) -> None:
        """What :meth:`save_adapters` wrote for ``stem``: the LoRA adapter and the CIE weights."""
        if self.uses_lora:
            self.load_lora(f"{stem}-adapter")
        if self.cie is not None:
            from safetensors.torch import load_file

            path = f"{stem}-cie.safetensors"
            if not os.path.isfile(path):
                raise MissingInputError(f"{path}: not found (expected the CIE weights beside the adapter)")
            self.cie.load_state_dict(load_file(path, device=str(self.device)))

    # --- small checkpoints --------------------------------------------------------------------
    def other_parameter(self) -> dict:
        """RecBole's place for non-weight state: the stage, so a reloaded model scores with the
        prompts it was trained on (a ``stage: all`` checkpoint is a CIE-stage model)."""
        return {"stage": self.stage}

    def load_other_parameter(self, para: dict | None) -> None:
        if para and para.get("stage"):
            self.set_stage(para["stage"])

    def state_dict(self, *args, **kwargs):
        """Only what training can change (LoRA and CIE): a checkpoint never holds the LLM."""
        full = super().state_dict(*args, **kwargs)
        return type(full)((k, v) for k, v in full.items() if _is_tunable_key(k))

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        expected = set(self.state_dict())
        missing, unexpected = expected - set(state_dict), set(state_dict) - expected
        if strict and (missing or unexpected):
            raise RuntimeError(
                f"CoLLM checkpoint does not match the model: missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}"
            )
        return super().load_state_dict(state_dict, strict=False, assign=assign)

def _is_tunable_key(key: str) -> bool:
    return "lora_" in key or key.startswith("cie.")
