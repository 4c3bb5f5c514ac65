"""`workbench class ...`: set up and look after a classroom (classroom.py).

    workbench class init FOLDER [--sign-in password|token] [--token T] [--max-jobs N]
    workbench class add-user NAME [--instructor]      (password from WORKBENCH_PASSWORD or asked)
    workbench class passwd NAME
    workbench class users | overview [--json]

FOLDER defaults to WORKBENCH_HOME; `--class FOLDER` picks another on every action. Start the app
with WORKBENCH_HOME=FOLDER and everyone signs in first.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys

from workbench import classroom
from workbench.errors import InvalidInput

PASSWORD_VARIABLE = "WORKBENCH_PASSWORD"


def _class_root(args: argparse.Namespace) -> str:
    return args.class_root or os.environ.get("WORKBENCH_HOME") or "workspace"


def _password(prompt: str) -> str:
    """From WORKBENCH_PASSWORD (scripts), else asked twice on the terminal."""
    given = os.environ.get(PASSWORD_VARIABLE)
    if given is not None:
        return given
    if not sys.stdin.isatty():
        raise InvalidInput(
            "No password given and no terminal to ask for one.",
            where=PASSWORD_VARIABLE,
            fix=f"Set {PASSWORD_VARIABLE} for the command, or run it in a terminal.",
        )
    first, second = getpass.getpass(prompt), getpass.getpass("Again: ")
    if first != second:
        raise InvalidInput("The two passwords differ.", where="password", fix="Run it again.")
    return first


def cmd_init(args: argparse.Namespace) -> int:
    root = args.folder or _class_root(args)
    token = args.token or (
        os.environ.get("WORKBENCH_CLASS_TOKEN", "") if args.sign_in == "token" else ""
    )
    classroom.init_class(root, sign_in=args.sign_in, token=token, max_jobs_per_user=args.max_jobs)
    print(f"Class ready in {root} (sign-in: {args.sign_in}, {args.max_jobs} jobs per user).")
    print(f"Fill its catalogue: WORKBENCH_HOME={root}/catalogue workbench models prepare default")
    print(f"Then start the app with WORKBENCH_HOME={root}.")
    return 0


def cmd_add_user(args: argparse.Namespace) -> int:
    role = "instructor" if args.instructor else "student"
    user = classroom.add_user(
        _class_root(args), args.name, _password(f"Password for {args.name}: "), role=role
    )
    print(f"Added {user.role} {user.name}.")
    return 0


def cmd_passwd(args: argparse.Namespace) -> int:
    classroom.set_password(
        _class_root(args), args.name, _password(f"New password for {args.name}: ")
    )
    print(f"New password set for {args.name}.")
    return 0


def cmd_users(args: argparse.Namespace) -> int:
    users = classroom.list_users(_class_root(args))
    if args.json:
        print(json.dumps([{"name": u.name, "role": u.role, "created": u.created} for u in users]))
        return 0
    for user in users:
        print(f"{user.name:<24} {user.role:<11} {user.created}")
    return 0


def cmd_overview(args: argparse.Namespace) -> int:
    rows = classroom.overview(_class_root(args))
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    columns = ["user", "role", "models", "datasets", "evals", "running", "queued", "failed"]
    print("  ".join(f"{c:<10}" for c in columns))
    for row in rows:
        print("  ".join(f"{str(row[c]):<10}" for c in columns))
    return 0


def add_class_commands(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--class", dest="class_root", help="the class folder (default: WORKBENCH_HOME)"
    )
    actions = verbs.add_parser("class", help="classroom mode: users, sign-in, class overview")
    actions = actions.add_subparsers(dest="class_verb", required=True, metavar="ACTION")
    p = actions.add_parser("init", parents=[common, where], help="make a folder a class")
    p.add_argument("folder", nargs="?", help="the class folder (default: WORKBENCH_HOME)")
    p.add_argument("--sign-in", choices=classroom.SIGN_IN_MODES, default="password")
    p.add_argument(
        "--token", default="", help="the class token (token sign-in; or WORKBENCH_CLASS_TOKEN)"
    )
    p.add_argument(
        "--max-jobs", type=int, default=classroom.DEFAULT_JOBS_PER_USER, help="active jobs per user"
    )
    p.set_defaults(func=cmd_init)
    p = actions.add_parser("add-user", parents=[common, where], help="add a student or instructor")
    p.add_argument("name")
    p.add_argument("--instructor", action="store_true", help="sees everyone's jobs and results")
    p.set_defaults(func=cmd_add_user)
    p = actions.add_parser("passwd", parents=[common, where], help="set a user's password")
    p.add_argument("name")
    p.set_defaults(func=cmd_passwd)
    p = actions.add_parser("users", parents=[common, where], help="the class's users")
    p.set_defaults(func=cmd_users)
    p = actions.add_parser("overview", parents=[common, where], help="each user's work at a glance")
    p.set_defaults(func=cmd_overview)
