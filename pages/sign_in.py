"""Sign in (classroom mode): the only page a visitor sees until they are signed in."""

from __future__ import annotations

import time

import streamlit as st

from workbench import classroom
from workbench.errors import WorkbenchError
from workbench.i18n import error_text, t

FAILED_SIGN_IN_PAUSE_S = 1.0  # slows down guessing

if not st.session_state.get("via_app"):
    st.switch_page("app.py", query_params=st.query_params.to_dict())
lang = st.session_state.get("lang", "en")
root = st.session_state["class_root"]
token_mode = classroom.load_settings(root).sign_in == "token"

st.title(t("class.sign_in_title", lang))
st.markdown(t("class.sign_in_intro_token" if token_mode else "class.sign_in_intro", lang))
with st.form("sign_in"):
    name = st.text_input(t("class.name", lang), key="sign_in_name")
    password = st.text_input(t("class.password", lang), type="password", key="sign_in_password")
    token = st.text_input(t("class.token", lang), type="password") if token_mode else ""
    submitted = st.form_submit_button(t("class.sign_in", lang), type="primary")
if submitted:
    try:
        st.session_state["user"] = classroom.sign_in(root, name, password, token)
    except WorkbenchError as exc:
        time.sleep(FAILED_SIGN_IN_PAUSE_S)
        st.error(error_text(exc, lang))
    else:
        st.rerun()
