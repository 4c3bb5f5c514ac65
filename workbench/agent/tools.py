"""Tools an agent can call, and tools made from a typed, documented Python function.

    tool = tool_from_function(my_function)      # schema from type hints + docstring
    tool.run({"city": "Paris"})                 # -> Observation(text=..., error=False)
    make_tools(["calculator", "python", "docs"])

Built in (`BUILTIN_TOOLS`, name -> factory): `calculator` (arithmetic parsed with `ast`, never
`eval`), `python` (the sandboxed interpreter, sandbox.py), `search_docs` (BM25 over a document
set, search.py), `datetime` (today's date, weekdays, date arithmetic) and `convert_units` (units.py).
A tool's failure is an observation the model reads (error=True), never an exception.
"""

from __future__ import annotations

import ast
import datetime as dt
import inspect
import json
import math
import operator
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from workbench.agent.units import convert_units
from workbench.errors import InvalidInput, WorkbenchError

MAX_OBSERVATION = 4000


@dataclass
class Observation:
    """What a tool returned: text for the model, images for the person, and whether it failed."""

    text: str
    images: list[bytes] = field(default_factory=list)
    error: bool = False


@dataclass
class Tool:
    """A callable tool: `parameters` is a JSON schema object (properties, required)."""

    name: str
    description: str
    parameters: dict
    function: Callable[..., Any]

    def schema(self) -> dict:
        """The OpenAI `tools` entry."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    def run(self, arguments: dict) -> Observation:
        """Check `arguments` against the schema, call the function, and say what happened."""
        try:
            checked = check_arguments(self, arguments)
            value = self.function(**checked)
        except WorkbenchError as exc:
            return Observation(f"Error: {exc.what} {exc.fix}".strip(), error=True)
        except Exception as exc:  # noqa: BLE001 - the model reads the failure and tries again
            return Observation(f"Error: {type(exc).__name__}: {exc}", error=True)
        if isinstance(value, Observation):
            return value
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        if len(text) > MAX_OBSERVATION:
            text = text[:MAX_OBSERVATION] + f"\n[truncated: {len(text)} characters in all]"
        return Observation(text)


def check_arguments(tool: Tool, arguments: Any) -> dict:
    """Arguments with known keys, required keys present and values of the declared types
    (a number written as a string is accepted)."""
    if not isinstance(arguments, dict):
        raise InvalidInput(
            f"The arguments of {tool.name} must be a JSON object, not {type(arguments).__name__}.",
            where=f"tool {tool.name}",
            fix=f"Send an object with keys {sorted(tool.parameters['properties'])}.",
        )
    properties = tool.parameters["properties"]
    unknown = sorted(set(arguments) - set(properties))
    missing = sorted(set(tool.parameters.get("required", [])) - set(arguments))
    if unknown or missing:
        raise InvalidInput(
            f"{tool.name} got unknown arguments {unknown} and lacks {missing}."
            if unknown and missing
            else (
                f"{tool.name} has no argument(s) {unknown}."
                if unknown
                else f"{tool.name} needs the argument(s) {missing}."
            ),
            where=f"tool {tool.name}",
            fix=f"Its arguments are {sorted(properties)}.",
        )
    return {
        key: _coerce(tool.name, key, value, properties[key]) for key, value in arguments.items()
    }


def _coerce(tool: str, key: str, value: Any, schema: dict) -> Any:
    kind = schema.get("type")
    try:
        if kind == "integer" and not isinstance(value, bool):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind == "number" and not isinstance(value, bool):
            return float(value)
        if kind == "string":
            return value if isinstance(value, str) else json.dumps(value)
        if kind == "boolean" and isinstance(value, bool):
            return value
        if kind == "array" and isinstance(value, list):
            return [_coerce(tool, key, v, schema.get("items", {})) for v in value]
        if kind in ("integer", "number", "boolean", "array"):
            raise ValueError
    except (TypeError, ValueError):
        raise InvalidInput(
            f"{tool}: argument {key!r} must be {kind}, got {value!r}.",
            where=f"tool {tool}: {key}",
            fix=f"Send a {kind}.",
        ) from None
    if "enum" in schema and value not in schema["enum"]:
        raise InvalidInput(
            f"{tool}: argument {key!r} must be one of {schema['enum']}, got {value!r}.",
            where=f"tool {tool}: {key}",
            fix="",
        )
    return value


# --- tools from functions --------------------------------------------------------------------

SIMPLE_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}


def type_schema(hint: Any, where: str) -> dict:
    """JSON schema of a type hint: str, int, float, bool, Literal[...], list[one of those]."""
    if hint in SIMPLE_TYPES:
        return {"type": SIMPLE_TYPES[hint]}
    origin = typing.get_origin(hint)
    if origin is Literal:
        values = list(typing.get_args(hint))
        kinds = {SIMPLE_TYPES.get(type(v)) for v in values}
        return {"type": kinds.pop() if len(kinds) == 1 else "string", "enum": values}
    if origin is list and typing.get_args(hint):
        return {"type": "array", "items": type_schema(typing.get_args(hint)[0], where)}
    raise InvalidInput(
        f"The type {hint!r} cannot be a tool argument.",
        where=where,
        fix="Use str, int, float, bool, Literal['a', 'b'] or list[...] of those.",
    )


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(description, {argument: description}) from a Google-style docstring."""
    doc = inspect.cleandoc(doc or "")
    head, _, rest = doc.partition("\nArgs:")
    described: dict[str, str] = {}
    current = ""
    for line in rest.splitlines():
        if re.match(r"^\S", line):  # the next section (Returns:, Raises:)
            break
        match = re.match(r"^\s+(\w+)(?:\s*\([^)]*\))?:\s*(.*)$", line)
        if match and len(line) - len(line.lstrip()) <= 4:
            current = match.group(1)
            described[current] = match.group(2).strip()
        elif current and line.strip():
            described[current] += " " + line.strip()
    return " ".join(head.split()), described


def tool_from_function(function: Callable[..., Any], name: str = "") -> Tool:
    """A tool whose schema comes from `function`'s type hints and docstring.

    Raises:
        InvalidInput: no docstring, an argument without a type hint, or a type a tool cannot
            take (see `type_schema`).
    """
    name = name or function.__name__
    where = f"tool function {name}"
    description, described = parse_docstring(function.__doc__ or "")
    if not description:
        raise InvalidInput(
            f"The function {name} has no docstring; the model needs it to know what the tool does.",
            where=where,
            fix='Add a docstring: a first line saying what it does, then "Args:" with a line per '
            "argument.",
        )
    hints = typing.get_type_hints(function)
    properties, required = {}, []
    for param in inspect.signature(function).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.name not in hints:
            raise InvalidInput(
                f"The argument {param.name!r} of {name} has no type hint.",
                where=where,
                fix=f"Write it as {param.name}: str (or int, float, bool, ...).",
            )
        schema = type_schema(hints[param.name], f"{where}: {param.name}")
        if param.name in described:
            schema["description"] = described[param.name]
        if param.default is inspect.Parameter.empty:
            required.append(param.name)
        else:
            schema["default"] = param.default
        properties[param.name] = schema
    parameters = {"type": "object", "properties": properties, "required": required}
    return Tool(name, description, parameters, function)


# --- calculator ------------------------------------------------------------------------------

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "floor": math.floor,
    "ceil": math.ceil,
    "exp": math.exp,
    "log": math.log,
    "log10": math.log10,
    "log2": math.log2,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "min": min,
    "max": max,
    "factorial": math.factorial,
    "gcd": math.gcd,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}


def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression, e.g. "23 * 17 + sqrt(16)" or "2^10".

    Args:
        expression: numbers with + - * / // % ** ^ and parentheses; functions sqrt, abs, round,
            floor, ceil, exp, log, log10, log2, sin, cos, tan, min, max, factorial, gcd; pi, e.
    """
    text = expression.strip().replace("^", "**").replace("×", "*").replace("÷", "/")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,000 -> 1000
    if not text or len(text) > 500:
        raise InvalidInput("The expression is empty or longer than 500 characters.", fix="")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise InvalidInput(
            f"{expression!r} is not an arithmetic expression.",
            fix="Write it like 12 * (3 + 4) / 2.",
        ) from None
    value = _evaluate(tree.body)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    return repr(round(value, 10)) if isinstance(value, float) else str(value)


def _evaluate(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and (abs(right) > 1000 or abs(left) > 1e100):
            raise InvalidInput("The power is too large to compute.", fix="Use smaller numbers.")
        if isinstance(node.op, ast.Mult) and max(_digits(left), _digits(right)) > 2000:
            raise InvalidInput("The numbers are too large to multiply.", fix="")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        args = [_evaluate(a) for a in node.args]
        if node.func.id == "factorial" and args and args[0] > 1000:
            raise InvalidInput("factorial takes numbers up to 1000.", fix="")
        return _FUNCTIONS[node.func.id](*args)
    raise InvalidInput(
        f"The calculator does not understand {ast.unparse(node)!r}.",
        fix="Use numbers, + - * / // % ** and the functions sqrt, log, sin, ... (no variables).",
    )


def _digits(value: Any) -> int:
    return len(str(abs(int(value)))) if isinstance(value, int) else 0


# --- date and time ---------------------------------------------------------------------------


def date_time(
    operation: Literal["now", "weekday", "add_days", "days_between"] = "now",
    date: str = "",
    days: int = 0,
    other_date: str = "",
    timezone: str = "UTC",
) -> str:
    """Dates and times: the current date and time, the weekday of a date, a date plus some
    days, or the number of days between two dates.

    Args:
        operation: now, weekday, add_days or days_between.
        date: a date as YYYY-MM-DD (for weekday, add_days, days_between).
        days: days to add (may be negative), for add_days.
        other_date: the second date as YYYY-MM-DD, for days_between.
        timezone: an IANA time zone such as UTC, Asia/Shanghai or Europe/Paris, for now.
    """
    if operation == "now":
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInput(f"Unknown time zone {timezone!r}.", fix="Use e.g. UTC.") from None
        now = dt.datetime.now(zone)
        return f"{now:%Y-%m-%d %H:%M:%S} {timezone} ({now:%A})"
    first = _parse_date(date, "date")
    if operation == "weekday":
        return f"{first:%Y-%m-%d} is a {first:%A}"
    if operation == "add_days":
        later = first + dt.timedelta(days=days)
        return f"{later:%Y-%m-%d} ({later:%A})"
    second = _parse_date(other_date, "other_date")
    return str((second - first).days)


def _parse_date(text: str, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(
            f"{name} {text!r} is not a date.", fix="Write dates as YYYY-MM-DD."
        ) from None


# --- the built-in set ------------------------------------------------------------------------


def python_tool(limits: Any = None) -> Tool:
    from workbench.agent.sandbox import run_python

    def python(code: str) -> Observation:
        """Run Python code in a sandbox and return what it prints (print the results you
        need). numpy, pandas and matplotlib are available; figures are captured. No network,
        no files outside a fresh temporary folder, a few seconds of CPU.

        Args:
            code: the Python program to run.
        """
        result = run_python(code, limits)
        return Observation(result.observation(), images=result.images, error=not result.ok)

    return tool_from_function(python)


def docs_tool(index: Any = None) -> Tool:
    from workbench.agent.search import DocumentIndex

    index = index or DocumentIndex.from_folder()

    def search_docs(query: str, k: int = 2) -> str:
        """Search the documents for passages about a question (BM25 keyword search).

        Args:
            query: keywords to look for.
            k: how many passages to return.
        """
        hits = index.search(query, min(max(k, 1), 5))
        if not hits:
            return "No passage matches those words."
        return "\n\n".join(f"[{p.source}] {p.text}" for _, p in hits)

    return tool_from_function(search_docs)


BUILTIN_TOOLS: dict[str, Callable[..., Tool]] = {
    "calculator": lambda **_: tool_from_function(calculate, "calculator"),
    "python": lambda limits=None, **_: python_tool(limits),
    "search_docs": lambda index=None, **_: docs_tool(index),
    "datetime": lambda **_: tool_from_function(date_time, "datetime"),
    "convert_units": lambda **_: tool_from_function(convert_units),
}
TOOL_ALIASES = {"docs": "search_docs", "search": "search_docs", "units": "convert_units"}


def make_tools(names: list[str], **options: Any) -> list[Tool]:
    """The built-in tools called `names` (aliases: docs, search, units).

    Raises:
        InvalidInput: an unknown tool name.
    """
    tools = []
    for name in names:
        key = TOOL_ALIASES.get(name.strip(), name.strip())
        if key not in BUILTIN_TOOLS:
            raise InvalidInput(
                f"There is no tool called {name!r}.",
                where="tools",
                fix=f"Choose from {', '.join(BUILTIN_TOOLS)} (or docs, units).",
            )
        tools.append(BUILTIN_TOOLS[key](**options))
    return tools
