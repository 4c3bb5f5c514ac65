"""The Gradio demo: a shareable chat page in front of the server (`workbench serve --gradio`).

The one module that imports gradio. The demo is mounted at /demo on the same FastAPI app as the
OpenAI-compatible API, so a hosted demo space needs one process and one port; it talks to the
same engine (and the same batching) as API clients do.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from workbench.generate import GenerationSettings

DEMO_PATH = "/demo"
EXAMPLES = [
    "What is the capital of France?",
    "Write a haiku about GPUs.",
    "你好，请介绍一下你自己。",
]


def demo_messages(message: str, history: list[dict], system: str) -> list[dict]:
    """Chat messages for the engine from Gradio's history (openai-style dicts)."""
    messages = [{"role": "system", "content": system}] if system.strip() else []
    for turn in history:
        content = turn.get("content")
        if isinstance(content, list):  # Gradio may hand content as a list of parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if turn.get("role") in ("user", "assistant") and isinstance(content, str):
            messages.append({"role": turn["role"], "content": content})
    messages.append({"role": "user", "content": message})
    return messages


def build_demo(engine: Any, model_name: str) -> Any:
    """A gr.ChatInterface that streams `engine`'s answers, with a system prompt and settings."""
    import gradio as gr

    def respond(
        message: str, history: list[dict], system: str, max_tokens: int, temperature: float
    ) -> Iterator[str]:
        settings = GenerationSettings(
            max_new_tokens=int(max_tokens), temperature=float(temperature)
        )
        stream = engine.chat(demo_messages(message, history, system), settings)
        text = ""
        try:
            for piece in stream:
                text += piece
                yield text
        finally:
            stream.close()  # the stop button: free the slot

    return gr.ChatInterface(
        respond,
        title=f"Chat with {model_name}",
        description="Served by Workbench. The same model answers at /v1 (OpenAI-compatible).",
        additional_inputs=[
            gr.Textbox("", label="System prompt"),
            gr.Slider(16, 1024, value=256, step=16, label="Max new tokens"),
            gr.Slider(0.0, 1.5, value=0.7, step=0.05, label="Temperature"),
        ],
        examples=[[e, "", 256, 0.7] for e in EXAMPLES],
        concurrency_limit=16,
        api_name="chat",
        analytics_enabled=False,
    )


def mount_demo(app: Any, engine: Any, model_name: str) -> Any:
    """`app` with the demo mounted at /demo."""
    import gradio as gr

    return gr.mount_gradio_app(app, build_demo(engine, model_name), path=DEMO_PATH)
