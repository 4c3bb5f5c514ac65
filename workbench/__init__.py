"""Workbench: the whole open-source LLM chain in one local app.

The backend is plain Python, importable without any UI: every page of the app and every CLI verb
calls into these modules.
"""

__version__ = "0.1.0"
