"""Manage the saved runs: rename, delete, download and upload them (within the server's run policy)."""

from pathlib import Path

import pandas as pd
import streamlit as st

from lab_ui import loaders, run_policy
from lab_ui.widgets import ACTIVE_RUN, errors_shown, flash, show_flash
from ocr_core import CheckpointError, RunInfo, UserError
from ocr_core.export import INPUT_CONTRACT, INSTALL_HINT, export_available
from ocr_core.metadata import AUGMENTED_TEST, CLEAN_TEST

DELETING = "manage.deleting"  # session key: the run the delete dialog asks about
RENAME_PROBLEM = "manage.rename_problem"  # session key: why the last rename was refused
COMPARED_RUNS = "evaluate.runs"  # session key of the Evaluate page's chosen runs, which follow a rename


def stop_deleting() -> None:
    st.session_state.pop(DELETING, None)


@st.dialog("Delete a run", on_dismiss=stop_deleting)
def confirm_delete(name: str) -> None:
    st.write(f"Delete `{name}` for good? Its checkpoint file is removed from the server.")
    delete_column, cancel_column = st.columns(2)
    if delete_column.button("Delete", type="primary", icon=":material/delete:", key="manage.delete_confirmed"):
        with errors_shown() as attempt:
            refuse_if_protected(name)
            loaders.run_store().delete(name)
        if attempt.failed:
            return
        stop_deleting()
        flash(f"Deleted `{name}`.")
        st.rerun()
    if cancel_column.button("Cancel", key="manage.delete_cancelled"):
        stop_deleting()
        st.rerun()


def refuse_if_protected(*names: str) -> None:
    """Checked again at the moment of the change: the choices on screen may be older than the policy."""
    for name in names:
        if (reason := run_policy.refusal(name)) is not None:
            raise CheckpointError(reason)


def rename_selected() -> None:
    """Rename's on_click: it runs before the page, so it may reset the form's widgets to the renamed run."""
    state = st.session_state
    old, new = state["manage.rename_from"], state["manage.rename_to"].strip()
    try:
        refuse_if_protected(old, new)
        loaders.run_store().rename(old, new)
    except UserError as error:
        state[RENAME_PROBLEM] = str(error)
        return
    state["manage.rename_from"], state["manage.rename_to"] = new, ""
    if state.get(ACTIVE_RUN) == old:
        state[ACTIVE_RUN] = new
    state[COMPARED_RUNS] = [new if name == old else name for name in state.get(COMPARED_RUNS, [])]
    flash(f"Renamed `{old}` to `{new}`.")


def rename_run(names: list[str]) -> None:
    old = st.selectbox("Run", names, key="manage.rename_from")
    new = st.text_input("New name", key="manage.rename_to", max_chars=64).strip()
    st.button("Rename", icon=":material/edit:", disabled=not (old and new), on_click=rename_selected)
    if (problem := st.session_state.pop(RENAME_PROBLEM, None)) is not None:
        st.error(problem, icon=":material/error:")


def import_run() -> None:
    # any file is taken, then checked: a type filter refuses others in the browser with no reason given
    upload = st.file_uploader("A run file saved by this lab (.safetensors)", key="manage.upload")
    name = st.text_input("Name", key="manage.upload_name", max_chars=64, placeholder="default: the file's name").strip()
    if st.button("Add run", icon=":material/upload:", disabled=upload is None):
        name = name or Path(upload.name).stem
        with errors_shown() as attempt:
            refuse_if_protected(name)
            if loaders.run_store().exists(name):  # the store's message offers an overwrite this page has not
                raise CheckpointError(f"A run named `{name}` exists already: type another name under *Name*.")
            loaders.run_store().import_bytes(name, upload.getvalue(), file_name=upload.name)
        if attempt.failed:
            return
        flash(f"Added run `{name}`.")
        st.rerun()


def download_run(names: list[str]) -> None:
    wanted = st.selectbox("Run", names, key="manage.download")
    if wanted is not None:
        path = loaders.run_store().path(wanted)
        st.download_button(
            "Download checkpoint",
            data=path.read_bytes,
            file_name=path.name,
            mime="application/octet-stream",
            icon=":material/download:",
            on_click="ignore",
        )
        st.caption("One `.safetensors` file: weights plus metadata, no pickle.")
        if export_available():
            st.download_button(
                "Download as ONNX",
                data=lambda: loaders.onnx_file(wanted),
                file_name=f"{wanted}.onnx",
                mime="application/octet-stream",
                icon=":material/deployed_code:",
                on_click="ignore",
            )
            st.caption(f"For any ONNX runtime: {INPUT_CONTRACT}. The file's metadata says so too.")
        else:
            st.caption(f"ONNX export is off on this server: {INSTALL_HINT}, then restart the app.")


def manage(runs: list[RunInfo], skipped: list[RunInfo]) -> None:
    table = pd.DataFrame(
        [
            {
                "run": run.name,
                "status": "ok" if run.ok else f"skipped: {run.problem}",
                "architecture": run.metadata.architecture if run.ok else None,
                "clean accuracy": run.metric(CLEAN_TEST),
                "seed-augmented accuracy": run.metric(AUGMENTED_TEST),
                "size": run.size,
                "modified": pd.Timestamp(run.modified, unit="s"),
            }
            for run in runs + skipped
        ]
    )
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={
            "clean accuracy": st.column_config.NumberColumn(format="percent"),
            "seed-augmented accuracy": st.column_config.NumberColumn(format="percent"),
            "size": st.column_config.NumberColumn(format="bytes"),
            "modified": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
        },
    )
    st.caption(run_policy.describe_policy())
    names = [run.name for run in runs]
    if run_policy.management_level() == "off":
        with st.container(border=True):
            st.markdown("**Download**")
            download_run(names)
        return
    changeable = [name for name in names if run_policy.refusal(name) is None]
    rename_box, delete_box, download_box, upload_box = st.columns(4)
    with rename_box.container(border=True):
        st.markdown("**Rename**")
        rename_run(changeable)
    with delete_box.container(border=True):
        st.markdown("**Delete**")
        doomed = st.selectbox("Run or skipped file", changeable + [run.name for run in skipped], key="manage.delete")
        if st.button("Delete…", icon=":material/delete:", disabled=doomed is None):
            st.session_state[DELETING] = doomed
        if DELETING in st.session_state:  # the dialog stays open across reruns until answered or dismissed
            confirm_delete(st.session_state[DELETING])
    with download_box.container(border=True):
        st.markdown("**Download**")
        download_run(names)
    with upload_box.container(border=True):
        st.markdown("**Upload**")
        import_run()


st.title("Manage runs")
st.caption("Rename, delete, download and upload the saved runs.")
show_flash()
all_runs, skipped_files = loaders.list_runs()
manage(all_runs, skipped_files)
