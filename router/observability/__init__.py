"""What the proxy tells its operator: request ids, JSON log lines, OpenTelemetry traces (see each module).

Importing this package imports nothing else: the pipeline's steps import `router.observability.context` alone.
"""
