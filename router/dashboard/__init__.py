"""The admin dashboard: what the proxy saved and what it cost in quality, folded from the outcome log and the
spend ledger (`aggregate`, `decisions`: pure; `reads`: the I/O, off the event loop). Its page is static files
in `router/dashboard_assets/`, served by `router/api/dashboard.py`."""
