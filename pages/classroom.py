"""Class (instructors only): every user's work at a glance, everyone's jobs, everyone's results.

Read-only: an instructor looks, and each student keeps control of their own jobs.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from workbench import classroom
from workbench.charts import jobs_frame
from workbench.errors import WorkbenchError
from workbench.i18n import error_text, t

if not st.session_state.get("via_app"):
    st.switch_page("app.py", query_params=st.query_params.to_dict())
lang = st.session_state.get("lang", "en")
root, viewer = st.session_state["class_root"], st.session_state["user"]

st.title(t("class.title", lang))
st.caption(t("class.intro", lang))
try:
    users = classroom.overview(root)
    jobs = classroom.class_jobs(root, viewer)
    results = classroom.class_results(root, viewer)
except WorkbenchError as exc:
    st.error(error_text(exc, lang))
    st.stop()

st.subheader(t("class.users", lang, count=len(users)))
st.dataframe(pd.DataFrame(users), hide_index=True, width="stretch")

st.subheader(t("class.jobs", lang, count=len(jobs)))
if jobs:
    frame = jobs_frame(jobs, lang)
    frame.insert(0, t("class.owner", lang), [job.owner for job in jobs])
    st.dataframe(frame, hide_index=True, width="stretch")
else:
    st.caption(t("class.no_jobs", lang))

st.subheader(t("class.results", lang, count=len(results)))
if results:
    st.dataframe(pd.DataFrame(results), hide_index=True, width="stretch")
else:
    st.caption(t("class.no_results", lang))
