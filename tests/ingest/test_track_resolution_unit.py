"""Track resolution's pure parts: which search item is the track, which known track answers a name pair.

The budget, the borrowed token and the error steps it shares with the metadata backfill are
tested in test_metadata_backfill_unit.py (`ingest.catalogue`)."""

import unicodedata


from weekly_wrapped import contracts
from weekly_wrapped.ingest.track_resolution import best_match, choose_known, fold


def item(track_id: str, name: str, *artists: str) -> dict:
    return {"id": track_id, "name": name, "artists": [{"id": f"a{i}", "name": a} for i, a in enumerate(artists)]}


def test_names_compare_as_name_keys_do():
    decomposed = unicodedata.normalize("NFD", "Sigur Rós")
    assert decomposed != "Sigur Rós" and fold(decomposed) == fold(" sigur rós ") == "sigur rós"
    assert fold(None) == ""


def test_the_match_is_the_item_with_the_same_track_name_and_artist():
    items = [item("x1", "Hoppípolla (Live)", "Sigur Rós"), item("x2", "HOPPÍPOLLA", "sigur rós"),
             item("x3", "Hoppípolla", "Sigur Rós")]
    # case and Unicode normalisation do not matter, a near miss never counts, Spotify's order decides ties
    assert best_match(items, unicodedata.normalize("NFD", "Sigur Rós"), "Hoppípolla")["id"] == "x2"
    assert best_match(items[:1], "Sigur Rós", "Hoppípolla") is None
    assert best_match([item("y", "Hoppípolla", "Sigur Rós Tribute Band")], "Sigur Rós", "Hoppípolla") is None
    assert best_match([], "Sigur Rós", "Hoppípolla") is None


def test_the_primary_artist_wins_over_a_featured_one_and_hangul_and_quotes_survive():
    song = 'Say "Hi" (feat. 아이유)'
    featured = item("f", song, "Someone Else", "아이유")
    primary = item("p", song, "아이유", "Someone Else")
    assert best_match([featured, primary], "아이유", song)["id"] == "p"
    assert best_match([featured], "아이유", song)["id"] == "f"  # featured is still the same song
    assert best_match([{"id": None, "name": song, "artists": []}, None, {}], "아이유", song) is None


def test_a_warehouse_track_answers_a_pair_only_with_equal_names_the_users_own_copy_first():
    def cand(track_id, position=1, own=False, name="Hoppípolla", artist="Sigur Rós", key="k"):
        return (key, "SIGUR RÓS", "hoppípolla", track_id, name, artist, position, own)

    assert choose_known([cand("b"), cand("a")]) == {"k": "a"}  # stable
    assert choose_known([cand("a", position=2), cand("b")]) == {"k": "b"}  # the primary artist's
    assert choose_known([cand("a"), cand("b", position=2, own=True)]) == {"k": "b"}  # the user's own copy
    assert choose_known([cand(contracts.name_key("track", "Sigur Rós", "Hoppípolla"), own=True)]) == {}
    assert choose_known([cand("a", name="Hoppípolla (Live)"), cand("b", artist="Sigur")]) == {}
    assert choose_known([cand("a"), cand("z", key="j")]) == {"k": "a", "j": "z"}


def test_the_dag_resolves_after_the_backfill_whatever_the_batches_did(tmp_path):
    """Parsed in a child process (Airflow's settings stay out of this one): wiring, trigger rule, param."""
    import json
    import os
    import subprocess
    import sys

    from wrapped_dev.config import REPO_ROOT

    script = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
dag = bag.dags["spotify_ingest"]
task = dag.get_task("resolve_tracks")
print("RESULT " + json.dumps({"errors": {str(k): str(v) for k, v in bag.import_errors.items()},
    "upstream": sorted(task.upstream_task_ids), "downstream": sorted(task.downstream_task_ids),
    "trigger_rule": str(task.trigger_rule.value), "params": dag.params.dump()}))
"""
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    done = subprocess.run([sys.executable, "-c", script, str(REPO_ROOT / "dags" / "spotify_ingest.py")],
                          env=env, capture_output=True, text=True, timeout=120)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line, done.stdout[-3000:] + done.stderr[-3000:]
    got = json.loads(line[len("RESULT "):])
    assert got["errors"] == {}
    assert (got["upstream"], got["downstream"], got["trigger_rule"]) == (["backfill_metadata"], [], "all_done")
    assert got["params"]["track_resolution_per_run"] is None  # the Variable decides unless a run says otherwise
