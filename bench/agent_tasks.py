"""How often the embedded model solves the bundled agent tasks, without tools and with them.

    python bench/agent_tasks.py [--model default] [--protocol react] [--max-steps 4]
                                [--modes plain,agent] [--json]

One run answers every task of assets/agent/tasks.jsonl twice: as a plain chat answer, and as an
agent with the task's tools (constrained decoding on the local engine). It prints the solve rate
of each mode, per category, and the time taken.
"""

from __future__ import annotations

import argparse
import json
import time

from workbench.agent.tasks import evaluate_agent, load_tasks
from workbench.engine import open_engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--protocol", default="react")
    parser.add_argument("--max-steps", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--modes", default="plain,agent", help="plain, agent or both")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    engine = open_engine(args.model, slots=1)
    started = time.perf_counter()
    report = evaluate_agent(
        engine,
        load_tasks(),
        modes=tuple(m.strip() for m in args.modes.split(",") if m.strip()),
        protocol=args.protocol,
        max_steps=args.max_steps,
        max_new_tokens=args.max_new_tokens,
        progress=lambda **p: print(f"  {p['step']}/{p['total']} {p['message']}", flush=True),
    )
    report["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return
    print(f"model {args.model}, protocol {args.protocol}, {report['seconds']} s")
    for mode, line in report["summary"].items():
        categories = {}
        for row in report["rows"]:
            if row["mode"] == mode:
                ok, n = categories.get(row["category"], (0, 0))
                categories[row["category"]] = (ok + row["correct"], n + 1)
        detail = ", ".join(f"{c} {ok}/{n}" for c, (ok, n) in categories.items())
        print(f"{mode:6s} solved {line['solved']}/{line['total']} ({line['rate']:.0%}): {detail}")
    engine.close()


if __name__ == "__main__":
    main()
