"""Quantization: smaller, faster models, and an honest account of what they cost in quality.

    schemes.py      int8 / int4 quantize-dequantize arithmetic (pure torch)
    modules.py      Int8Linear / Int4Linear with CPU kernels and a reference path
    awq.py          activation-aware scale and clip search from calibration data
    artifact.py     the quantized model folder: save, recognise, load
    gguf_export.py  GGUF files (Q8_0, Q4_1) for llama.cpp and Ollama
    lmdeploy.py     LMDeploy's lite auto_awq in its own environment (GPU)
    report.py       size, held-out perplexity, decode speed, answers side by side
    runner.py       run_quantize, the job

Nothing here imports torch at package import time.
"""
