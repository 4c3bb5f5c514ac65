"""Fine-tune: base model, dataset, method and settings (a preset fills them), "will it fit?" on
this machine, the same run as a CLI command and recipe YAML, and Start, which queues the job.

The Training runs page follows the job live; closing this page loses nothing.
"""

from __future__ import annotations

import streamlit as st

from workbench.data.prepare import list_datasets
from workbench.errors import WorkbenchError
from workbench.finetune.fit import check_fit
from workbench.finetune.prefs_view import train_title
from workbench.finetune.presets import PRESETS, apply_preset, preset_values
from workbench.finetune.view import (
    LABELS,
    TRAIN_CHOICES,
    fit_facts,
    fit_key,
    fit_parts_figure,
    free_output_name,
    outputs_in_queue,
    refuse_output,
    train_command,
    train_defaults,
)
from workbench.i18n import error_text, t
from workbench.jobs import submit
from workbench.models import DEFAULT_MODEL, list_models
from workbench.recipes import TrainRecipe, dump_recipe, recipe_from_dict
from workbench.workspace import Workspace

# A fresh server may run this page without app.py (see its docstring): go through app.py.
if not st.session_state.get("via_app"):
    st.switch_page("app.py", query_params=st.query_params.to_dict())
lang = st.session_state.get("lang", "en")
ws: Workspace = st.session_state["workspace"]  # this session's (classroom: the user's own)
DEFAULTS = train_defaults()
DEFAULTS["probe_prompts"] = ["Who are you?", "你是谁？"]  # the self-cognition exercise's check
SHOW = {"train_on": lambda value: t(f"data.train_on_{value}", lang)}  # choices in words
GROUPS = {  # expander -> the fields it holds
    "schedule": ("epochs", "max_steps", "batch_size", "grad_accum", "learning_rate", "scheduler")
    + ("warmup_ratio", "cutoff"),
    "lora": ("lora_rank", "lora_alpha", "lora_dropout", "lora_targets", "dora", "rslora"),
    "data": ("objective", "beta", "train_on", "packing"),
    "hardware": ("device", "dtype", "gradient_checkpointing"),
    "watch": ("probe_prompts", "probe_every", "eval_every", "save_every"),
}
WIDGETS = {name for names in GROUPS.values() for name in names} | {"method"}
PRESET_FIELDS = WIDGETS & {name for values in PRESETS.values() for name in values}
START = {**PRESETS["classroom"], "preset": "classroom"}  # minutes on a laptop CPU


def restore(name: str, options: list | None = None) -> None:
    """Give widget `name` its first value: what this session last had here (Streamlit forgets
    the widgets of other pages), else the starting preset's value, else the recipe default."""
    value = st.session_state.get("ft_saved", {}).get(name, START.get(name, DEFAULTS.get(name)))
    if f"ft_{name}" in st.session_state or value is None or value not in (options or [value]):
        return
    st.session_state[f"ft_{name}"] = "\n".join(value) if isinstance(value, list) else value


def preset_chosen() -> None:
    """Callback of the preset box: its values go into the widgets it names, defaults elsewhere."""
    preset = st.session_state["ft_preset"]
    values = preset_values(preset, st.session_state.get("ft_objective", "")) if preset else {}
    for name in PRESET_FIELDS if preset in PRESETS else ():
        st.session_state[f"ft_{name}"] = values.get(name, DEFAULTS[name])


def widget(name: str, where=st):
    """The widget for recipe field `name`, chosen by its type; returns its value."""
    key, label, tip = f"ft_{name}", t(f"ft.f_{name}", lang), t(f"ft.h_{name}", lang)
    restore(name)
    value = DEFAULTS[name]
    if name in TRAIN_CHOICES:
        choices, show = TRAIN_CHOICES[name], SHOW.get(name, str)
        return where.selectbox(label, choices, key=key, help=tip, format_func=show)
    if isinstance(value, bool):
        return where.checkbox(label, key=key, help=tip)
    if isinstance(value, int):
        return int(where.number_input(label, min_value=0, step=1, key=key, help=tip))
    if isinstance(value, float):
        step = 1e-5 if name == "learning_rate" else 0.01 if value < 1 else 0.5
        return float(where.number_input(label, 0.0, step=step, format="%g", key=key, help=tip))
    if isinstance(value, list):
        text = where.text_area(label, key=key, help=tip, height=80)
        return [line.strip() for line in text.splitlines() if line.strip()]
    return where.text_input(label, key=key, help=tip).strip()


def settings(datasets: list[dict]) -> TrainRecipe:
    """The recipe the widgets describe (raises WorkbenchError for a bad or taken value)."""
    left, middle, right = st.columns(3)
    models, rows = [r["name"] for r in list_models(ws)], {d["name"]: d for d in datasets}
    for name, options in (("model", models), ("data", list(rows)), ("preset", ["", *PRESETS])):
        restore(name, options)
    model = left.selectbox(t("ft.model", lang), models, key="ft_model")
    data = middle.selectbox(t("ft.data", lang), list(rows), key="ft_data")
    counts = {split: rows[data][f"{split}_rows"] for split in ("train", "eval")}
    middle.caption(t("ft.data_rows", lang, **counts))
    values = {"method": widget("method", right)}
    left, right = st.columns([1, 2])
    preset = left.selectbox(
        t("ft.preset", lang),
        ["", *PRESETS],
        key="ft_preset",
        on_change=preset_chosen,
        format_func=lambda p: p or t("ft.no_preset", lang),
        help=t("ft.preset_help", lang),
    )
    queued = outputs_in_queue(ws)
    if st.session_state.get("ft_out_for") != (model, data, values["method"]):
        st.session_state["ft_out"] = free_output_name(ws, f"{data}-{values['method']}", queued)
        st.session_state["ft_out_for"] = (model, data, values["method"])
    restore("out")  # back from another page: the name typed before
    out = right.text_input(t("ft.out", lang), key="ft_out", help=t("ft.h_out", lang)).strip()
    for group, names in GROUPS.items():
        with st.expander(t(f"ft.group_{group}", lang)):
            columns = st.columns(2)
            values.update({n: widget(n, columns[i % 2]) for i, n in enumerate(names)})
    st.session_state["ft_saved"] = {**values, "preset": preset, "model": model, "data": data}
    st.session_state["ft_saved"]["out"] = out
    fields = {"model": model, "data": data, "out": out, **values}
    recipe = TrainRecipe(**(apply_preset(preset, fields) if preset else fields))
    refuse_output(ws, recipe.out, queued)
    return recipe


@st.cache_data(show_spinner=False, max_entries=64)
def fit_report(recipe: dict, root: str, data_created: str, _hardware, _ws) -> dict:
    """check_fit, cached by the fields that change it, the data's date and `root` (of `_ws`)."""
    return check_fit(recipe_from_dict(recipe), _ws, _hardware)


def show_fit(recipe: TrainRecipe, created: str) -> None:
    st.subheader(t("ft.fit_title", lang))
    if recipe.model == DEFAULT_MODEL and not ws.exists(DEFAULT_MODEL):
        st.info(t("ft.default_unprepared", lang))
        st.page_link("pages/home.py", label=t("ft.go_home", lang), icon=":material/home:")
        return
    try:
        with st.spinner(t("ft.fit_running", lang)):
            hardware = st.session_state.get("hardware")
            report = fit_report(fit_key(recipe), str(ws.root), created, hardware, ws)
    except WorkbenchError as exc:
        st.error(error_text(exc, lang))
        return
    facts, memory = fit_facts(report), report["memory"]
    facts["where"] = t("ft.gpu_memory" if facts["cuda"] else "ft.ram", lang)
    show = st.success if report["fits"] else st.error
    show(t("ft.fits" if report["fits"] else "ft.no_fit", lang, **facts))
    words = {k: t(f"ft.part_{k}", lang) for k in LABELS if k in memory["parts_gb"]}
    words.update(needed=t("ft.needed", lang), available=t("ft.available", lang), gb="GB")
    st.plotly_chart(fit_parts_figure(report, words), key="ft_fit_chart")
    st.markdown(t("ft.time", lang, **facts))
    if memory["suggestions"]:
        tips = "".join(f"\n- {tip}" for tip in memory["suggestions"])
        st.markdown(t("ft.suggestions", lang) + tips)
    st.caption(t("ft.fit_caption", lang))


def show_started(job_id: str) -> None:
    st.success(t("ft.started", lang, id=job_id))
    if st.button(t("ft.open_run", lang), icon=":material/monitoring:", key="ft_open_run"):
        st.switch_page("pages/runs.py", query_params={"job": job_id, "lang": lang})


st.title(t("ft.title", lang))
st.caption(t("ft.caption", lang))
datasets = list_datasets(ws)
if not datasets:
    st.info(t("ft.no_data", lang))
    st.page_link("pages/data_import.py", label=t("ft.go_data", lang), icon=":material/upload_file:")
else:
    try:
        recipe = settings(datasets)
    except WorkbenchError as exc:
        st.error(error_text(exc, lang))
        recipe = None
    if recipe is not None:
        show_fit(recipe, next(d["created"] for d in datasets if d["name"] == recipe.data))
        with st.expander(t("ft.reproduce", lang)):
            st.caption(t("ft.reproduce_hint", lang))
            st.code(train_command(recipe), language="bash")
            st.code(dump_recipe(recipe), language="yaml")
        if st.button(
            t("ft.start", lang), type="primary", icon=":material/play_arrow:", key="ft_start"
        ):
            try:
                job = submit(ws, recipe, title=train_title(recipe))
            except WorkbenchError as exc:
                st.error(error_text(exc, lang))
            else:
                st.session_state["ft_started"] = job.id
                st.session_state.pop("ft_out_for", None)  # the name is taken now: offer a new one
                st.rerun()
    if st.session_state.get("ft_started"):
        show_started(st.session_state["ft_started"])
