"""Agents: a model that plans, calls tools, reads what they return and answers (the Lagent step).

Modules, one concern each: protocols.py (ReAct, OpenAI function calling, InternLM2: prompts and
parsers), constrain.py (grammar-constrained decoding for local engines), loop.py (the agent
loop and its events), tools.py (built-in tools and tools from Python functions), units.py (unit
conversion), sandbox.py + sandbox_child.py (the code interpreter's process sandbox), search.py
(BM25 document search), tasks.py (the bundled agent task set and its evaluation), eval_kind.py
(the same task set as Evaluate-page tasks), view.py (what the Agent page shows).
See assets/agent/README.md for what the sandbox does and does not protect against.
"""
