"""Triton kernels for Workbench, each beside a pure-torch reference that defines its result.

Planned: a fused linear + cross-entropy (the loss without materialising the full logits), RMSNorm,
SwiGLU, and a dequantizing GEMM for 8- and 4-bit weights. Each kernel will live in its own module
with its launcher and autograd.Function, and be tested against its reference on small, odd shapes
(under TRITON_INTERPRET=1 on CPU, for real on a GPU). None exist yet: this package is empty.

Note: this folder shadows the PyPI package `kernels` (Hugging Face's kernel hub) whenever the
repository root is first on sys.path. transformers and bitsandbytes only use that package when it
is available and fall back cleanly; tests/kernels/test_name_clash.py keeps that true.
"""
