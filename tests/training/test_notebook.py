"""The threshold-tuning notebook runs top to bottom and writes a threshold that meets the stated target."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from router.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "threshold_tuning.ipynb"


@pytest.mark.slow
def test_the_notebook_executes_and_writes_the_threshold_into_the_config(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("# keep me\nserver:\n  port: 8123\n")
    environment = {"CASCADEFLOW_NB_SPLIT": "test", "CASCADEFLOW_NB_LIMIT": "150", "CASCADEFLOW_NB_TARGET": "0.9",
                   "CASCADEFLOW_NB_CONFIG": str(config), "CASCADEFLOW_NB_OUT": str(tmp_path / "out")}
    previous = {key: os.environ.get(key) for key in environment}
    os.environ.update(environment)
    try:
        notebook = nbformat.read(NOTEBOOK, as_version=4)
        NotebookClient(notebook, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    chosen = json.loads((tmp_path / "out" / "operating_point.json").read_text())
    settings = load_settings(config, environ={})
    assert config.read_text().startswith("# keep me\n") and settings.server.port == 8123
    assert settings.learned_router.skip_threshold == chosen["skip_threshold"]
    assert 0.0 <= chosen["skip_threshold"] <= 1.0 and chosen["rows"] >= 100
    assert chosen["quality_ratio"] >= 0.9
    assert (tmp_path / "out" / "quality_cost.png").stat().st_size > 10_000
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]
    assert not [output for output in outputs if output.get("output_type") == "error"]
