"""CryptoSentinel's services: the FastAPI app (`app.api`) and the Streamlit dashboard (`app.dashboard`)."""
