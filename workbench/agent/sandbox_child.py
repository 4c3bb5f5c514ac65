"""The first code that runs inside the sandbox process (started by sandbox.py; never imported).

    python -I sandbox_child.py BOX SETTINGS_JSON

In order: lower the resource limits, drop root to user nobody (when started as root), keep only
the Python installation on sys.path, install an audit hook that refuses what the sandbox forbids,
then run BOX/main.py with the working folder BOX. Figures left open by matplotlib are saved as
BOX/figure-N.png afterwards. Standard library only: this file runs before any guard is up.
"""

import json
import os
import resource
import sys
import traceback

FORBIDDEN_EVENTS = {
    "subprocess.Popen": "starting other programs",
    "os.system": "starting other programs",
    "os.exec": "starting other programs",
    "os.posix_spawn": "starting other programs",
    "os.spawn": "starting other programs",
    "os.fork": "creating processes",
    "os.forkpty": "creating processes",
    "pty.spawn": "starting other programs",
    "os.kill": "signalling processes",
    "os.killpg": "signalling processes",
    "ctypes.dlopen": "loading native libraries (ctypes)",
    "ctypes.dlsym": "loading native libraries (ctypes)",
    "ctypes.cdata": "raw memory access (ctypes)",
    "ctypes.cdata/buffer": "raw memory access (ctypes)",
    "ctypes.string_at": "raw memory access (ctypes)",
    "ctypes.wstring_at": "raw memory access (ctypes)",
    "ctypes.addressof": "raw memory access (ctypes)",
    "ctypes.call_function": "calling native code (ctypes)",
    "socket.__new__": "network access",
    "socket.connect": "network access",
    "socket.bind": "network access",
    "socket.getaddrinfo": "network access",
    "socket.gethostbyname": "network access",
    "socket.sendto": "network access",
    "sys.addaudithook": "changing the sandbox's guard",
    "gc.get_objects": "inspecting the interpreter's objects",
    "gc.get_referrers": "inspecting the interpreter's objects",
    "gc.get_referents": "inspecting the interpreter's objects",
    "sys.setprofile": "tracing the interpreter",
    "sys.settrace": "tracing the interpreter",
    "os.setuid": "changing users",
    "os.chroot": "changing the root folder",
}
FORBIDDEN_MODULES = ("_posixsubprocess", "cffi", "_cffi_backend", "pty", "_xxsubinterpreters")
PATH_EVENTS = {  # event -> index of the path argument; writes must stay inside the box
    "os.remove": 0,
    "os.rename": 0,
    "os.rmdir": 0,
    "os.mkdir": 0,
    "os.chmod": 0,
    "os.chown": 0,
    "os.symlink": 1,
    "os.link": 1,
    "os.truncate": 0,
    "os.utime": 0,
    "shutil.rmtree": 0,
    "os.chdir": 0,
}
LIST_EVENTS = ("os.listdir", "os.scandir")
NOBODY = 65534


def limit(settings):
    mb = 2**20
    pairs = {
        resource.RLIMIT_AS: settings["memory_mb"] * mb,
        resource.RLIMIT_CPU: (settings["cpu_s"], settings["cpu_s"] + 2),
        resource.RLIMIT_FSIZE: settings["file_mb"] * mb,
        resource.RLIMIT_NOFILE: 64,
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_NPROC: settings["nproc"],
    }
    for kind, value in pairs.items():
        resource.setrlimit(kind, value if isinstance(value, tuple) else (value, value))


def drop_root(box, to_nobody):
    if os.getuid() != 0 or not to_nobody:
        return
    os.chown(box, NOBODY, NOBODY)
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def disarm_imports():
    """Import what libraries need (pandas imports ctypes, matplotlib subprocess) before the
    guard is up, then take away the parts with no audit event of their own: the fork+exec
    primitive behind subprocess. ctypes stays, but every use of it raises a guarded event."""
    import ctypes  # noqa: F401 - its own import opens a library, which the guard would refuse
    import subprocess

    subprocess._fork_exec = None
    sys.modules.pop("_posixsubprocess", None)


def install_guard(box, read_roots):
    box = os.path.realpath(box)
    read_roots = tuple(os.path.realpath(r) for r in read_roots)

    def inside(path, roots):
        if isinstance(path, int):
            return True  # an already open descriptor
        try:
            real = os.path.realpath(os.fsdecode(path))
        except (TypeError, ValueError):
            return False
        return any(real == r or real.startswith(r.rstrip("/") + "/") for r in roots)

    def guard(event, args):
        why = FORBIDDEN_EVENTS.get(event)
        if why is None and event == "import" and args[0].split(".")[0] in FORBIDDEN_MODULES:
            raise ImportError(f"sandbox: importing {args[0]} is not allowed")
        if why is None and event == "open":
            path, mode = args[0], args[1] or "r"
            writing = isinstance(mode, str) and any(c in mode for c in "wax+")
            flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
            writing = writing or bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            roots = (box,) if writing else (box, *read_roots)
            if path is not None and not inside(path, roots):
                what = "writing" if writing else "reading"
                raise PermissionError(f"sandbox: {what} {path} is outside the sandbox folder")
            return
        if why is None and event in PATH_EVENTS:
            path = args[PATH_EVENTS[event]]
            if not inside(path, (box,)):
                raise PermissionError(f"sandbox: {event} on {path} is outside the sandbox folder")
            return
        if why is None and event in LIST_EVENTS:
            path = args[0] if args and args[0] is not None else "."
            if not inside(path, (box, *read_roots)):
                raise PermissionError(f"sandbox: listing {path} is outside the sandbox folder")
            return
        if why is not None:
            raise PermissionError(f"sandbox: {why} is not allowed ({event})")

    sys.addaudithook(guard)


def _under(path, roots):
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def save_figures(box, most):
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return
    for i, number in enumerate(pyplot.get_fignums()[:most]):
        pyplot.figure(number).savefig(os.path.join(box, f"figure-{i}.png"), dpi=80)


def run(code, namespace):
    """Run the code; like a notebook cell, the value of a last bare expression is printed."""
    import ast

    tree = ast.parse(code, "<code>")
    last = tree.body[-1] if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    if last is not None:
        tree.body.pop()
    exec(compile(tree, "<code>", "exec"), namespace)
    if last is not None:
        value = eval(compile(ast.Expression(last.value), "<code>", "eval"), namespace)
        if value is not None:
            print(repr(value))


def main():
    box, settings = sys.argv[1], json.loads(sys.argv[2])
    with open(os.path.join(box, "main.py"), encoding="utf-8") as handle:
        code = handle.read()
    limit(settings)
    drop_root(box, settings["to_nobody"])
    os.chdir(box)
    roots = settings["read_roots"]
    sys.path[:] = [p for p in sys.path if p and _under(os.path.realpath(p), roots)]
    disarm_imports()
    install_guard(box, roots)
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    status = 0
    try:
        run(code, namespace)
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 0
    except BaseException:  # noqa: BLE001 - the user's error is the observation
        kind, value, tb = sys.exc_info()
        frames = [f for f in traceback.extract_tb(tb) if f.filename != __file__][-8:]
        lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)]
        if isinstance(value, SyntaxError):  # the frames would be the parser's, not the code's
            lines = []
        lines += traceback.format_exception_only(kind, value)
        sys.stderr.write("".join(lines))
        status = 1
    try:
        save_figures(box, settings["max_figures"])
    except Exception as exc:  # noqa: BLE001
        sys.stderr.write(f"(figures could not be saved: {exc})\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    main()
