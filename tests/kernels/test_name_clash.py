"""Our top-level `kernels/` folder shadows Hugging Face's PyPI package `kernels` whenever the
repository root is first on sys.path (as under `streamlit run app.py` or `pytest`). This proves
transformers and bitsandbytes still work then, and do not mistake our folder for theirs.

It runs in a fresh interpreter so that nothing imported by other tests hides the clash.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

PROBE = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import kernels

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import is_kernels_available

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        logits = model(torch.tensor([[1, 2, 3]])).logits

    import bitsandbytes as bnb
    from bitsandbytes.functional import dequantize_4bit

    dense = torch.nn.Linear(32, 16)
    nf4 = bnb.nn.Linear4bit(32, 16, quant_type="nf4", compute_dtype=torch.float32)
    nf4.load_state_dict(dense.state_dict())
    nf4 = nf4.to("cpu")  # quantizes the weight
    x = torch.randn(4, 32)
    with torch.no_grad():
        y = nf4(x)
        w = dequantize_4bit(nf4.weight.data, nf4.weight.quant_state)
        reference = x @ w.T + dense.bias
    int8 = bnb.nn.Linear8bitLt(32, 16, has_fp16_weights=False)

    print(json.dumps({
        "kernels_file": kernels.__file__,
        "transformers_sees_hub_kernels": is_kernels_available(),
        "logits_shape": list(logits.shape),
        "logits_finite": bool(torch.isfinite(logits).all()),
        "nf4_weight_dtype": str(nf4.weight.dtype),
        "nf4_matches_its_dequantized_weight": bool(torch.allclose(y, reference, atol=1e-4)),
        "nf4_error_vs_dense": float((y - dense(x)).abs().max() / dense(x).abs().max()),
        "int8_param_type": type(int8.weight).__name__,
    }))
    """
)


def test_transformers_and_bitsandbytes_work_beside_our_kernels_folder():
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(REPO_ROOT)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO_ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(found["kernels_file"]).resolve() == REPO_ROOT / "kernels" / "__init__.py"
    assert found["transformers_sees_hub_kernels"] is False
    assert found["logits_shape"] == [1, 3, 64] and found["logits_finite"]
    assert found["nf4_weight_dtype"] == "torch.uint8"  # really stored in 4 bits (packed)
    assert found["nf4_matches_its_dequantized_weight"]
    assert found["nf4_error_vs_dense"] < 0.5  # nf4 is lossy, but close to the dense layer
    assert found["int8_param_type"] == "Int8Params"
