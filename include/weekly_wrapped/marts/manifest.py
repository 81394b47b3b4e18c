"""The render manifest: dbt_project/manifest.json, from which the `dbt_build` DAG takes its shape.

Airflow parses DAG files over and over, with no database and no network (and our DAG
integrity test refuses sockets); astronomer-cosmos can build its task graph from a dbt
manifest without calling dbt (`LoadMode.DBT_MANIFEST`). dbt writes that manifest with
`dbt parse` (offline: no warehouse connection), but a full one is ~1 MB of macros, timestamps,
absolute paths and the database name. So `write_manifest` keeps only what cosmos reads to
render tasks (ids, types, files, configs, tags, dependencies), sorted, and the file is
committed beside the project: it is generated when the project changes, like a lock file.

    .local/venv/bin/python -m weekly_wrapped.marts.manifest          # regenerate it
    .local/venv/bin/python -m weekly_wrapped.marts.manifest --check  # exit 1 if stale

tests/dbt/test_dbt_build_dag.py fails when the committed file is not what `dbt parse` gives,
so a new model, test or dependency cannot be forgotten in the DAG. Which SQL runs is never
taken from it: every task runs dbt on the project files themselves.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from weekly_wrapped.marts.dbt_runner import DBT_PROJECT_DIR, dbt_command, default_dbt_bin, run_dbt, tool_env

RENDER_MANIFEST = DBT_PROJECT_DIR / "manifest.json"

# What cosmos (cosmos.dbt.graph, LoadMode.DBT_MANIFEST) reads from a node, source or exposure.
NODE_KEYS = ("unique_id", "name", "resource_type", "package_name", "original_file_path", "fqn",
             "tags", "config", "depends_on", "freshness")


def render_manifest(manifest: Mapping) -> dict:
    """The parts of a full dbt manifest that cosmos renders from, without volatile fields."""

    def keep(node: Mapping) -> dict:
        kept = {key: node[key] for key in NODE_KEYS if key in node}
        if "depends_on" in kept:
            kept["depends_on"] = {"nodes": sorted(kept["depends_on"].get("nodes", []))}
        return kept

    metadata = manifest.get("metadata", {})
    return {
        "metadata": {
            "project_name": metadata.get("project_name"),
            "dbt_schema_version": metadata.get("dbt_schema_version"),
            "generated_by": "weekly_wrapped.marts.manifest (dbt parse, trimmed for cosmos)",
        },
        "nodes": {uid: keep(node) for uid, node in sorted(manifest.get("nodes", {}).items())},
        "sources": {uid: keep(node) for uid, node in sorted(manifest.get("sources", {}).items())},
        "exposures": {uid: keep(node) for uid, node in sorted(manifest.get("exposures", {}).items())},
        "selectors": manifest.get("selectors", {}),
    }


def dumps(manifest: Mapping) -> str:
    return json.dumps(manifest, indent=1, sort_keys=True) + "\n"


def parse_project(dbt_bin: Path | str | None = None, *, log=print) -> dict:
    """`dbt parse` of dbt_project/ into a throwaway folder; returns the full manifest.

    Needs no warehouse: dbt parse only renders the project and profiles.yml (whose values
    default to the local stack's, never used for a connection here).
    """
    with tempfile.TemporaryDirectory(prefix="wrapped-dbt-parse-") as tmp:
        artifacts = Path(tmp)
        command = dbt_command(dbt_bin or default_dbt_bin(), ("parse", "--no-partial-parse"), artifacts_dir=artifacts)
        run_dbt(command, tool_env(), log=log)
        return json.loads((artifacts / "target" / "manifest.json").read_text())


def write_manifest(path: Path = RENDER_MANIFEST, dbt_bin: Path | str | None = None, *, log=print) -> bool:
    """Regenerate the render manifest; True when its content changed."""
    text = dumps(render_manifest(parse_project(dbt_bin, log=log)))
    if path.exists() and path.read_text() == text:
        return False
    path.write_text(text)
    return True


def is_current(path: Path = RENDER_MANIFEST, dbt_bin: Path | str | None = None, *, log=print) -> bool:
    return path.exists() and path.read_text() == dumps(render_manifest(parse_project(dbt_bin, log=log)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if the file is stale")
    parser.add_argument("--path", type=Path, default=RENDER_MANIFEST)
    args = parser.parse_args(argv)
    quiet = lambda line: None  # noqa: E731 - dbt's own output only matters when it fails (DbtError has it)
    if args.check:
        current = is_current(args.path, log=quiet)
        print(f"{args.path}: {'up to date' if current else 'STALE: run python -m weekly_wrapped.marts.manifest'}")
        return 0 if current else 1
    changed = write_manifest(args.path, log=quiet)
    print(f"{args.path}: {'written' if changed else 'unchanged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
