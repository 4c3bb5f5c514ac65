"""Workbench, the web app: page config, the shared sidebar, and navigation over pages/.

Run with `streamlit run app.py`. The sidebar holds the language (also kept in the URL as
`?lang=zh`, so a reload keeps it), the workspace, this machine's hardware and the running jobs.
Pages are thin: they read widgets, call workbench/, and draw what it returns.

Streamlit takes a folder named pages/ beside the entry script for a legacy multipage app until a
script in the server process calls st.navigation, so the very first run after a server start may
run a page without this script (no sidebar, no language). Each page checks `via_app`, set below,
and sends such a run through this script.
"""

from __future__ import annotations

import faulthandler
import signal
from pathlib import Path

import streamlit as st

# `kill -USR1 <app pid>` writes every thread's stack to the app's log: how a stuck page is
# diagnosed on a shared server (bench/load_users.py does it for users that time out).
if hasattr(signal, "SIGUSR1"):
    faulthandler.register(signal.SIGUSR1, all_threads=True)

from workbench.charts import status_label
from workbench.classroom import classroom_root, user_workspace
from workbench.errors import WorkbenchError
from workbench.hardware import HardwareInfo, detect_hardware
from workbench.i18n import LANGUAGES, error_text, hardware_summary, normalize_lang, t
from workbench.jobs import ACTIVE_STATUSES, latest_progress, list_jobs
from workbench.limits import Limits, current_limits
from workbench.workspace import Workspace

ROOT = Path(__file__).resolve().parent
SIDEBAR_POLL_S = 5  # the running-jobs box, while jobs are active; every open tab polls

st.set_page_config(page_title="Workbench", layout="wide")
if (ROOT / "assets" / "style.css").is_file():
    st.html(f"<style>{(ROOT / 'assets' / 'style.css').read_text('utf-8')}</style>")


@st.cache_resource(show_spinner=False)
def hardware() -> HardwareInfo:
    """This machine, read once per server process (detect_hardware imports torch)."""
    return detect_hardware()


def choose_language() -> str:
    """The language radio; its first value comes from the URL, and the URL follows it."""
    if "lang" not in st.session_state:
        st.session_state["lang"] = normalize_lang(st.query_params.get("lang"))
    lang = st.sidebar.radio(
        t("sidebar.language"),
        list(LANGUAGES),
        key="lang",
        format_func=LANGUAGES.get,
        horizontal=True,
    )
    if st.query_params.get("lang") != lang:
        st.query_params["lang"] = lang
    return lang


def active_jobs(ws: Workspace) -> list:
    return list_jobs(ws, status=ACTIVE_STATUSES, limit=None)


def show_active_jobs(ws: Workspace, lang: str, shown: tuple[str, ...]) -> None:
    """Running and queued jobs with their progress; reruns the whole app when the set changes."""
    try:
        # A full run has just listed them (below); its timer's reruns list them again.
        jobs = st.session_state.pop("sidebar_jobs", None)
        if jobs is None:
            jobs = active_jobs(ws)
    except WorkbenchError as exc:
        st.error(error_text(exc, lang))
        return
    if tuple(job.id for job in jobs) != shown:
        st.rerun()  # a job started or ended: pages showing it must redraw too
    st.caption(t("sidebar.jobs", lang))
    if not jobs:
        st.caption(t("sidebar.no_jobs", lang))
    for job in jobs:
        fraction = latest_progress(job)["fraction"]
        percent = "" if fraction is None else f" · {fraction:.0%}"
        st.markdown(
            f"**{job.title or job.kind}**  \n`{job.id}` · {status_label(job.status, lang)}{percent}"
        )
        if fraction is not None:
            st.progress(fraction)


def sign_in_first(class_root: Path) -> None:
    """Classroom mode without a signed-in user: the sign-in page is all there is."""
    st.session_state["class_root"] = class_root
    st.session_state["via_app"] = True
    sign_in = st.Page(ROOT / "pages" / "sign_in.py", title=t("class.sign_in", lang))
    st.navigation([sign_in], position="hidden").run()
    st.stop()


def show_user(user) -> None:
    role = t(f"class.role_{user.role}", lang)
    st.markdown(t("class.signed_in", lang, name=user.name, role=role))
    if st.button(t("class.sign_out", lang), key="sign_out"):
        for key in list(st.session_state):
            if key != "lang":
                del st.session_state[key]
        st.rerun()


def show_limits(limits: Limits) -> None:
    if limits.read_only:
        st.info(t("demo.read_only", lang))
    elif limits.demo:
        unlimited = t("demo.unlimited", lang)
        values = {
            name: unlimited if value is None else f"{value:g}"
            for name, value in (
                ("jobs", limits.max_active_jobs),
                ("steps", limits.max_train_steps),
                ("tokens", limits.max_new_tokens),
                ("upload", limits.max_upload_mb),
            )
        }
        st.info(t("demo.banner", lang, **values))


lang = choose_language()
class_root = classroom_root()
user = st.session_state.get("user")
if class_root is not None and user is None:
    sign_in_first(class_root)
ws = user_workspace(class_root, user) if class_root is not None else Workspace()
st.session_state["workspace"] = ws  # pages work in this session's workspace
st.session_state["limits"] = limits = current_limits(ws)
with st.sidebar:
    if user is not None:
        show_user(user)
    show_limits(limits)
    st.caption(t("sidebar.workspace", lang))
    st.code(str(ws.root), language=None)
    st.caption(t("sidebar.hardware", lang))
    st.session_state["hardware"] = hardware()  # pages read the same cached object
    st.markdown(hardware_summary(st.session_state["hardware"], lang))
    try:
        st.session_state["sidebar_jobs"] = listed = active_jobs(ws)
    except WorkbenchError:
        st.session_state.pop("sidebar_jobs", None)
        listed = []  # the fragment below lists them again and shows the error
    shown = tuple(job.id for job in listed)
    st.fragment(show_active_jobs, run_every=SIDEBAR_POLL_S if shown else None)(ws, lang, shown)

home = st.Page(ROOT / "pages" / "home.py", title=t("nav.home", lang), icon=":material/home:")
jobs = st.Page(ROOT / "pages" / "jobs.py", title=t("nav.jobs", lang), icon=":material/list_alt:")
data_pages = [
    st.Page(ROOT / "pages" / f"data_{name}.py", title=title, icon=icon)
    for name, title, icon in (
        ("import", t("nav.data_import", lang), ":material/upload_file:"),
        ("explore", t("nav.data_explore", lang), ":material/manage_search:"),
        ("prepare", t("nav.data_prepare", lang), ":material/cleaning_services:"),
        ("prefs", t("prefs.nav", lang), ":material/thumbs_up_down:"),
    )
]
finetune_pages = [
    st.Page(ROOT / "pages" / f"{name}.py", title=title, icon=icon)
    for name, title, icon in (
        ("finetune", t("nav.finetune", lang), ":material/tune:"),
        ("runs", t("nav.runs", lang), ":material/monitoring:"),
    )
]
eval_pages = [
    st.Page(ROOT / "pages" / f"{name}.py", title=title, icon=icon)
    for name, title, icon in (
        ("evaluate", t("eval.nav", lang), ":material/rule:"),
        ("eval_results", t("eval.nav_results", lang), ":material/leaderboard:"),
    )
]
quantize_pages = [
    st.Page(ROOT / "pages" / "quantize.py", title=t("quant.nav", lang), icon=":material/compress:")
]
serve_pages = [
    st.Page(ROOT / "pages" / f"{name}.py", title=title, icon=icon)
    for name, title, icon in (
        ("chat", t("chat.nav_chat", lang), ":material/chat:"),
        ("arena", t("chat.nav_arena", lang), ":material/compare:"),
        ("deploy", t("deploy.nav", lang), ":material/rocket_launch:"),
        ("agent", t("agent.nav", lang), ":material/smart_toy:"),
    )
]
top_pages = [home, jobs]
if user is not None and user.instructor:
    top_pages.append(
        st.Page(
            ROOT / "pages" / "classroom.py", title=t("class.nav", lang), icon=":material/groups:"
        )
    )
page = st.navigation(
    {
        "": top_pages,
        t("nav.data_section", lang): data_pages,
        t("nav.finetune_section", lang): finetune_pages,
        t("quant.nav_section", lang): quantize_pages,
        t("eval.nav_section", lang): eval_pages,
        t("chat.nav_section", lang): serve_pages,
    },
    expanded=True,  # every step of the chain in view, not "View 3 more"
)
st.session_state["via_app"] = True
try:
    page.run()
except WorkbenchError as exc:  # errors are for people: what, where, fix — never a traceback
    st.error(error_text(exc, lang))
