"""Export a model to a GGUF file (Q8_0 or Q4_1) for llama.cpp and Ollama, with the `gguf` package.

    export_gguf(model, tokenizer, folder, "Q8_0")   # writes folder/model.gguf + config + tokenizer

Supported: Llama-layout models (llama, mistral) with a byte-level BPE tokenizer — the embedded
SmolLM2 among them. The file carries the architecture numbers, the tokenizer (tokens, types,
merges, special ids, chat template) and the weights: norms in F32, the embedding (and an untied
output layer) in Q8_0, every other matrix in the chosen type; a matrix whose rows are not a
multiple of the 32-value block stays F16. Rotary attention in GGUF pairs neighbouring rows of
the query and key projections, where Hugging Face pairs row i with row i + head_dim/2, so q and
k rows are reordered on the way out (transformers' GGUF reader reorders them back).

The folder reloads through transformers' GGUF reader (dequantized), so it can be chatted with
and scored like any model; `ollama create NAME -f Modelfile` with `FROM ./model.gguf` or
`llama-cli -m model.gguf` run it natively.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from workbench.errors import InvalidInput
from workbench.quantize.artifact import GGUF_FILE, QUANT_METHOD

ARCHITECTURES = {"llama": "llama", "mistral": "llama"}
TYPES = ("Q8_0", "Q4_1")
LAYER_TENSORS = {  # Hugging Face name inside a decoder layer -> GGUF name inside a block
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def check_exportable(config: dict) -> None:
    """Raise InvalidInput unless a model with this config.json can be written as GGUF here."""
    model_type = config.get("model_type", "?")
    if model_type not in ARCHITECTURES:
        raise InvalidInput(
            f"GGUF export does not support {model_type!r} models yet.",
            where="method gguf",
            fix=f"Supported: {', '.join(ARCHITECTURES)}. For other models use int8 / int4-awq "
            "(Workbench artifacts), or llama.cpp's own convert_hf_to_gguf.py.",
        )
    if config.get("attention_bias") or config.get("mlp_bias"):
        raise InvalidInput(
            "GGUF export here writes Llama layers without biases; this model has biases.",
            where="method gguf",
            fix="Use int8 or int4-awq, or llama.cpp's convert_hf_to_gguf.py.",
        )


def _rotary_rows(weight: np.ndarray, heads: int) -> np.ndarray:
    """Reorder the rows of a q/k projection from Hugging Face's half-split rotary pairing to
    GGUF's neighbouring pairs: GGUF row 2i + j of a head is HF row j * head_dim / 2 + i."""
    rows, cols = weight.shape
    head_dim = rows // heads
    return weight.reshape(heads, 2, head_dim // 2, cols).swapaxes(1, 2).reshape(rows, cols)


def _tokenizer_vocab(tokenizer: Any) -> tuple[list[str], list[int], list[str]]:
    """(tokens by id, token types, merges) of a byte-level BPE tokenizer."""
    from gguf import TokenType

    data = json.loads(tokenizer.backend_tokenizer.to_str())
    model = data.get("model", {})
    if model.get("type") != "BPE":
        raise InvalidInput(
            f"GGUF export needs a byte-level BPE tokenizer; this one is {model.get('type')!r}.",
            where="tokenizer",
            fix="Use int8 / int4-awq for this model, or llama.cpp's convert_hf_to_gguf.py.",
        )
    size = len(tokenizer)
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [int(TokenType.UNUSED)] * size
    for token, index in model["vocab"].items():
        if index < size:
            tokens[index], types[index] = token, int(TokenType.NORMAL)
    for added in data.get("added_tokens", []):
        if added["id"] < size:
            tokens[added["id"]] = added["content"]
            types[added["id"]] = int(
                TokenType.CONTROL if added.get("special") else TokenType.USER_DEFINED
            )
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return tokens, types, merges


def export_gguf(model: Any, tokenizer: Any, folder: Path, qtype: str = "Q8_0") -> Path:
    """Write `model` (float weights) as folder/model.gguf plus config.json and tokenizer files.

    Raises:
        InvalidInput: an unsupported architecture, tokenizer or type.
    """
    import gguf

    config = model.config
    check_exportable(config.to_dict())
    if qtype not in TYPES:
        raise InvalidInput(
            f"GGUF type {qtype!r} is not offered.", where="gguf type", fix=f"Use {TYPES}."
        )
    folder = Path(folder)
    path = folder / GGUF_FILE
    main_type = getattr(gguf.GGMLQuantizationType, qtype)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(str(getattr(config, "_name_or_path", "model")).rstrip("/").split("/")[-1])
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    rope = getattr(config, "rope_parameters", None) or {}
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(config, "rope_theta", 1e4))))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(
        gguf.LlamaFileType.MOSTLY_Q8_0 if qtype == "Q8_0" else gguf.LlamaFileType.MOSTLY_Q4_1
    )
    tokens, types, merges = _tokenizer_vocab(tokenizer)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for setter, token_id in (
        (writer.add_bos_token_id, tokenizer.bos_token_id),
        (writer.add_eos_token_id, getattr(model.generation_config, "eos_token_id", None)),
        (writer.add_pad_token_id, tokenizer.pad_token_id),
        (writer.add_unk_token_id, tokenizer.unk_token_id),
    ):
        if isinstance(token_id, list):
            token_id = token_id[0]
        if isinstance(token_id, int):
            setter(token_id)
    if getattr(tokenizer, "chat_template", None):
        writer.add_chat_template(tokenizer.chat_template)

    state = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    tied = getattr(config, "tie_word_embeddings", False)

    def add(name: str, array: np.ndarray, kind: Any) -> None:
        if array.ndim == 1 or array.shape[-1] % 32:
            kind = (
                gguf.GGMLQuantizationType.F32 if array.ndim == 1 else gguf.GGMLQuantizationType.F16
            )
        if kind == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(name, array.astype(np.float32))
        elif kind == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(name, array.astype(np.float16))
        else:
            writer.add_tensor(name, gguf.quants.quantize(array, kind), raw_dtype=kind)

    q8 = gguf.GGMLQuantizationType.Q8_0
    add("token_embd.weight", state["model.embed_tokens.weight"], q8)
    for i in range(config.num_hidden_layers):
        for hf_name, gguf_name in LAYER_TENSORS.items():
            array = state[f"model.layers.{i}.{hf_name}"]
            if hf_name == "self_attn.q_proj.weight":
                array = _rotary_rows(array, config.num_attention_heads)
            elif hf_name == "self_attn.k_proj.weight":
                array = _rotary_rows(array, config.num_key_value_heads)
            add(f"blk.{i}.{gguf_name}", np.ascontiguousarray(array), main_type)
    add("output_norm.weight", state["model.norm.weight"], gguf.GGMLQuantizationType.F32)
    if not tied:
        add("output.weight", state["lm_head.weight"], q8)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    saved = config.to_dict()
    saved["quantization_config"] = {
        "quant_method": QUANT_METHOD,
        "format": "gguf",
        "method": "gguf-q8_0" if qtype == "Q8_0" else "gguf-q4",
        "gguf_type": qtype,
        "gguf_file": GGUF_FILE,
        "embedding_type": "Q8_0",
        "norm_type": "F32",
    }
    (folder / "config.json").write_text(json.dumps(saved, indent=2, ensure_ascii=False), "utf-8")
    tokenizer.save_pretrained(folder)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(folder)
    (folder / "Modelfile").write_text(f"FROM ./{GGUF_FILE}\n", "utf-8")
    return path
