"""The Streamlit dashboard: `main.py` is the frame (`streamlit run app/dashboard/main.py`), `views/` the pages,
`data.py` every API call and its caching, `ui.py` the shared layout helpers."""
