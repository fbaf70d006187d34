"""The FastAPI service: a thin layer over `cryptosentinel.service` and `cryptosentinel.queries`."""
