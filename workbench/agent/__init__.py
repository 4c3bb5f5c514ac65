"""Agents: a model that plans, calls tools, reads what they return and answers (the Lagent step).

Modules, one concern each: protocols.py (ReAct, OpenAI function calling, InternLM2: prompts and
parsers), constrain.py (grammar-constrained decoding for local engines), loop.py (the agent
loop and its events), tools.py (built-in tools and tools from Python functions), sandbox.py
(the code interpreter's process sandbox), search.py (BM25 document search), tasks.py (the
bundled agent task set and its evaluation).
"""
