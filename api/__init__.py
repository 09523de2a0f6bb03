"""HTTP interface of mlft (FastAPI)."""
