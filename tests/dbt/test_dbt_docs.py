"""`dbt docs generate` (the command in dbt_project/README.md) works on the built test database."""

from __future__ import annotations

import json


def test_docs_generate_writes_the_site_and_the_catalog(dbt_built):
    dbt_built.dbt("docs", "generate")
    target = dbt_built.artifacts_dir / "target"
    assert (target / "index.html").exists()
    catalog = json.loads((target / "catalog.json").read_text())
    documented = {node["metadata"]["name"] for node in catalog["nodes"].values()}
    assert {"wrapped_weekly", "int_weekly_totals", "fct_plays"} <= documented
