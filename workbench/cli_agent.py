"""`workbench agent` and `workbench tool`: run an agent, or one tool alone, from the terminal.

    workbench agent --model default --tools calculator,python,docs "What is 4821 * 379?" --json
    workbench agent --model openai:http://127.0.0.1:8000/v1#default --protocol function_calling "..."
    workbench agent eval --model default --json        # the bundled task set, plain vs agent
    workbench tool python "print(sum(range(10)))" --json
    workbench tool calculator "2^10"

`agent` prints the trace (thought, action, observation) and the answer; with --json one object
{answer, steps, tool_calls, seconds, trace}. `tool python` prints the sandbox's result (stdout,
stderr, error, images as base64 PNG).
"""

from __future__ import annotations

import argparse
import json
import sys

from workbench.cli import EXIT_FAILED, _print_json


def _tools(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def cmd_agent(args: argparse.Namespace) -> int:
    from workbench.agent.loop import check_agent_options, run_agent
    from workbench.agent.tools import make_tools
    from workbench.engine import open_engine
    from workbench.generate import GenerationSettings

    check_agent_options(args.protocol, args.max_steps)
    tools = make_tools(_tools(args.tools))
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens)
    engine = open_engine(args.model, **({"api_key": args.api_key} if args.api_key else {}))
    trace, answer = [], None
    try:
        events = run_agent(
            engine,
            args.question,
            tools=tools,
            protocol=args.protocol,
            max_steps=args.max_steps,
            settings=settings,
            constrained=None if args.constrained == "auto" else args.constrained == "on",
        )
        for event in events:
            if event.kind == "token":
                continue
            trace.append(event.to_dict())
            if event.kind == "answer":
                answer = event.text
            if not args.json:
                _print_event(event)
    finally:
        engine.close()
    if args.json:
        steps = max((e["step"] for e in trace), default=0)
        calls = sum(e["kind"] == "action" for e in trace)
        _print_json({"answer": answer, "steps": steps, "tool_calls": calls, "trace": trace})
    return 0 if answer is not None else EXIT_FAILED


def _print_event(event) -> None:
    labels = {
        "thought": "Thought",
        "action": "Action",
        "observation": "Observation",
        "answer": "Answer",
        "error": "Format error",
        "stopped": "Stopped",
    }
    if event.kind == "action":
        arguments = json.dumps(event.arguments, ensure_ascii=False)
        print(f"[{event.step}] Action: {event.tool} {arguments}")
    else:
        print(f"[{event.step}] {labels[event.kind]}: {event.text}")


def cmd_agent_eval(args: argparse.Namespace) -> int:
    from workbench.agent.tasks import evaluate_agent, load_tasks
    from workbench.engine import open_engine

    tasks = load_tasks(args.tasks) if args.tasks else load_tasks()
    if args.limit:
        tasks = tasks[: args.limit]
    engine = open_engine(args.model, slots=1)
    try:
        report = evaluate_agent(
            engine,
            tasks,
            protocol=args.protocol,
            max_steps=args.max_steps,
            max_new_tokens=args.max_new_tokens,
            progress=None if args.json else lambda **p: print(f"{p['step']}/{p['total']}"),
        )
    finally:
        engine.close()
    if args.json:
        _print_json(report)
    else:
        for mode, line in report["summary"].items():
            print(f"{mode}: solved {line['solved']} of {line['total']} ({line['rate']:.0%})")
    return 0


def cmd_tool(args: argparse.Namespace) -> int:
    from workbench.agent.sandbox import SandboxLimits, run_python
    from workbench.agent.tools import make_tools

    if args.tool == "python":
        limits = SandboxLimits(wall_s=args.timeout, cpu_s=max(1, int(args.timeout)))
        result = run_python(args.input, limits)
        if args.json:
            _print_json(result.to_dict())
        else:
            print(result.observation())
        return 0 if result.ok else EXIT_FAILED
    (tool,) = make_tools([args.tool])
    first = next(iter(tool.parameters["properties"]))
    try:
        arguments = json.loads(args.input) if args.input.lstrip().startswith("{") else None
    except json.JSONDecodeError:
        arguments = None
    observation = tool.run(arguments if isinstance(arguments, dict) else {first: args.input})
    if args.json:
        _print_json({"tool": tool.name, "text": observation.text, "error": observation.error})
    else:
        print(observation.text, file=sys.stderr if observation.error else sys.stdout)
    return EXIT_FAILED if observation.error else 0


def add_agent_commands(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register `agent`, `agent eval` and `tool`."""
    from workbench.agent.protocols import PROTOCOLS
    from workbench.agent.tools import BUILTIN_TOOLS

    p = verbs.add_parser(
        "agent", parents=[common], help="answer a question with tools (ReAct / function calling)"
    )
    p.add_argument("question", help="the question; or 'eval' to run the bundled agent tasks")
    p.add_argument("--model", default="default")
    p.add_argument("--api-key", default="", help="for an openai:URL#model endpoint")
    p.add_argument(
        "--tools",
        default="calculator,python,docs",
        help=f"comma-separated: {', '.join(BUILTIN_TOOLS)} (docs, units also work)",
    )
    p.add_argument("--protocol", default="react", choices=list(PROTOCOLS))
    p.add_argument("--max-steps", type=int, default=5)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument(
        "--constrained",
        choices=["auto", "on", "off"],
        default="auto",
        help="constrained decoding (auto: on for local models)",
    )
    p.add_argument("--tasks", default="", help="eval: a tasks JSONL file (default: bundled)")
    p.add_argument("--limit", type=int, default=0, help="eval: only the first N tasks")
    p.set_defaults(func=lambda a: cmd_agent_eval(a) if a.question == "eval" else cmd_agent(a))

    p = verbs.add_parser("tool", parents=[common], help="run one agent tool alone")
    p.add_argument("tool", choices=[*BUILTIN_TOOLS, "docs", "units"])
    p.add_argument("input", help="python: the code; others: the first argument or a JSON object")
    p.add_argument("--timeout", type=float, default=20.0, help="python: wall-clock seconds")
    p.set_defaults(func=cmd_tool)
