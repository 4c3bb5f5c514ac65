"""The plain runner: any transformers model (adapters, quantized checkpoints, other families).

Slower than the lean path (lean.py) but runs whatever `load_model` returns: each slot keeps the
model's own cache object and decode steps run slot by slot. The decode loop and the engine use
it exactly like `LeanModel`.
"""

from __future__ import annotations

from typing import Any

import torch

from workbench.engine.batching import TokenScores


class HFRunner:
    """prefill / decode / score with a transformers model's own forward pass."""

    weights = "model"

    def __init__(self, model: Any, *, slots: int, max_len: int) -> None:
        self.model = model
        self.slots, self.max_len = slots, max_len
        self.device = next(model.parameters()).device
        self._caches: dict[int, Any] = {}

    def weight_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.model.parameters())

    @torch.inference_mode()
    def prefill(self, slot: int, ids: list[int]) -> torch.Tensor:
        tokens = torch.tensor([ids], device=self.device)
        output = self.model(input_ids=tokens, use_cache=True)
        self._caches[slot] = output.past_key_values
        return output.logits[0, -1].float()

    @torch.inference_mode()
    def decode(self, tokens: list[int], positions: list[int]) -> torch.Tensor:
        rows = []
        for slot, (token, position) in enumerate(zip(tokens, positions, strict=True)):
            cache = self._caches.get(slot)
            if cache is None:  # an idle slot below an active one
                rows.append(None)
                continue
            output = self.model(
                input_ids=torch.tensor([[token]], device=self.device),
                past_key_values=cache,
                cache_position=torch.tensor([position], device=self.device),
                use_cache=True,
            )
            self._caches[slot] = output.past_key_values
            rows.append(output.logits[0, -1].float())
        vocab = next(r for r in rows if r is not None).shape[-1]
        return torch.stack([r if r is not None else torch.zeros(vocab) for r in rows])

    def release(self, slot: int) -> None:
        self._caches.pop(slot, None)

    @torch.inference_mode()
    def score(self, rows: list[list[int]], starts: list[int]) -> list[TokenScores]:
        width = max(len(r) for r in rows)
        tokens = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, row in enumerate(rows):
            tokens[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        logits = self.model(
            input_ids=tokens.to(self.device), attention_mask=mask.to(self.device)
        ).logits
        results = []
        for i, (row, start) in enumerate(zip(rows, starts, strict=True)):
            logprobs = torch.log_softmax(logits[i, start - 1 : len(row) - 1].float(), -1)
            targets = torch.tensor(row[start:], device=logprobs.device)
            best, best_ids = logprobs.max(-1)
            picked = logprobs.gather(-1, targets[:, None])[:, 0]
            results.append(TokenScores(picked.tolist(), best_ids.tolist(), best.tolist()))
        return results
