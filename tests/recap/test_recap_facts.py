"""WeekFacts from a wrapped_weekly row, and which week is "the last complete one"."""

from datetime import date, datetime, timezone
from decimal import Decimal

from recap_helpers import make_row

from weekly_wrapped.recap.facts import facts_from_row, last_complete_week_start


def test_facts_take_every_number_from_the_row():
    facts = facts_from_row(make_row())
    assert facts.minutes == Decimal("312.4")
    assert (facts.plays, facts.distinct_tracks, facts.distinct_artists) == (87, 61, 23)
    assert (facts.busiest_hour, facts.busiest_weekday) == (21, "Friday")
    assert (facts.new_tracks, facts.new_artists, facts.longest_streak_days, facts.days_with_plays) == (12, 2, 4, 6)
    assert (facts.previous_week_plays, facts.plays_change, facts.minutes_change) == (64, 23, Decimal("62.4"))
    assert [t.name for t in facts.top_tracks] == ["Hyperballad", "Teardrop", "Glory Box", "Unfinished Sympathy", "Roads"]
    assert facts.top_tracks[1].detail == "Massive Attack" and facts.top_tracks[1].plays == 8
    assert [a.name for a in facts.top_artists][:2] == ["Björk", "Massive Attack"]
    assert facts.top_genres == ()
    assert facts.week_end == date(2026, 11, 22)
    assert facts.week_label == "16–22 Nov 2026"


def test_optional_columns_may_be_missing_or_null():
    minimal = {"user_id": "u", "week_start": "2026-11-30", "plays": 3, "minutes_listened": 7.25,
               "top_genres": None, "top_tracks": "[]", "has_gap": None}
    facts = facts_from_row(minimal)
    assert facts.minutes == Decimal("7.2") or facts.minutes == Decimal("7.3")
    assert facts.time_zone == "UTC" and facts.top_genres == () and facts.top_tracks == ()
    assert facts.busiest_weekday is None and facts.previous_week_plays is None and facts.has_gap is False
    assert facts.week_label == "30 Nov – 6 Dec 2026"
    prompt_facts = facts.as_prompt_facts()
    assert "top_genres" not in prompt_facts and "plays_change_vs_previous_week" not in prompt_facts


def test_unknown_time_zone_falls_back_to_utc():
    facts = facts_from_row(make_row(time_zone="Mars/Olympus"))
    assert facts.time_zone == "UTC"


def test_busiest_weekday_is_the_marts_name_not_its_number():
    # busiest_weekday (ISO number) and busiest_weekday_name disagree here on purpose.
    facts = facts_from_row(make_row(busiest_weekday=7, busiest_weekday_name="Wednesday"))
    assert facts.busiest_weekday == "Wednesday"


def test_no_previous_week_means_no_change_in_the_facts():
    facts = facts_from_row(make_row(previous_week_plays=0, plays_change=87, minutes_listened_change=Decimal("312.4")))
    assert not facts.had_previous_week
    assert "plays_change_vs_previous_week" not in facts.as_prompt_facts()


def test_last_complete_week_is_computed_in_the_users_zone():
    # Monday 2026-11-23 12:00 UTC: every zone has finished the week of Monday 2026-11-16.
    noon = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
    for tz in ("UTC", "Europe/Berlin", "America/Los_Angeles", "Pacific/Kiritimati", "Etc/GMT+12"):
        assert last_complete_week_start(noon, tz) == date(2026, 11, 16), tz
    # Monday 07:00 UTC is still Sunday in Los Angeles: its last complete week is the one before.
    early = datetime(2026, 11, 23, 7, 0, tzinfo=timezone.utc)
    assert last_complete_week_start(early, "Europe/Berlin") == date(2026, 11, 16)
    assert last_complete_week_start(early, "America/Los_Angeles") == date(2026, 11, 9)
    # Across a DST change (Europe, 2026-10-25): still Monday-to-Monday in local time.
    assert last_complete_week_start(datetime(2026, 10, 26, 0, 30, tzinfo=timezone.utc), "Europe/Berlin") == date(
        2026, 10, 19
    )


def test_facts_read_only_the_marts_contract_columns():
    """Every column facts_from_row reads is one the dbt contract declares (or app.users adds),
    and every fact the e-mail shows comes from one of them."""
    from collections.abc import Mapping

    from recap_helpers import mart_contract_columns

    class Recording(Mapping):
        def __init__(self, row):
            self.row, self.read = row, set()

        def __getitem__(self, key):
            self.read.add(key)
            return self.row[key]

        def get(self, key, default=None):
            self.read.add(key)
            return self.row.get(key, default)

        def __iter__(self):
            return iter(self.row)

        def __len__(self):
            return len(self.row)

    contract = mart_contract_columns()
    row = Recording(make_row())
    facts_from_row(row)
    assert row.read - {"display_name", "email", "locale"} <= set(contract)
    assert row.read >= {"minutes_listened", "busiest_weekday_name", "longest_streak_days", "minutes_listened_change",
                        "skip_events", "skip_rate", "top_skipped_tracks"}
    assert set(contract) - set(make_row()) == {"week_start_at", "week_end_at", "built_at"}


def test_count_outcomes_counts_users_by_status_and_sent_recaps_by_source():
    from weekly_wrapped.recap.job import count_outcomes

    outcomes = [{"status": "sent", "recap_source": "gemini"}, {"status": "sent", "recap_source": "template"},
                {"status": "already_sent", "recap_source": None}, {"status": "no_data"}]
    assert count_outcomes(outcomes) == {"users": 4, "sent": 2, "recap_gemini": 1, "recap_template": 1,
                                        "already_sent": 1, "no_data": 1}


def test_skips_are_read_when_an_export_covered_the_week():
    facts = facts_from_row(make_row())
    assert (facts.skip_events, facts.skip_rate, facts.skip_rate_percent) == (29, Decimal("0.2500"), 25)
    assert facts.skip_rate_label == "25% (29 skips)"
    assert [(t.name, t.detail, t.plays) for t in facts.top_skipped_tracks] == [
        ("All Star", "Smash Mouth", 6), ("Roads", "Portishead", 2)]
    prompt_facts = facts.as_prompt_facts()
    assert (prompt_facts["skip_rate_percent"], prompt_facts["skips"]) == (25, 29)
    assert prompt_facts["most_skipped_tracks"][0] == {"name": "All Star", "by": "Smash Mouth", "skips": 6}
    # a third rounds to a whole percent, half up, as the e-mail shows it
    assert facts_from_row(make_row(skip_rate=Decimal("0.3333"), skip_events=1)).skip_rate_label == "33% (1 skip)"
    assert facts_from_row(make_row(skip_rate=Decimal("0.1250"))).skip_rate_percent == 13


def test_unknown_skips_say_nothing_rather_than_zero():
    # no export covered the week: the mart's skip_rate is null (the API cannot see skips)
    facts = facts_from_row(make_row(skip_rate=None, skip_events=0))
    assert facts.skip_rate is None and facts.skip_rate_label is None
    assert facts.top_skipped_tracks == ()  # never a "most skipped" list without a known rate
    assert not {"skip_rate_percent", "skips", "most_skipped_tracks"} & set(facts.as_prompt_facts())
    # an exported week without skips: a known 0 %, and no list
    zero = facts_from_row(make_row(skip_rate=Decimal("0"), skip_events=0, top_skipped_tracks=[]))
    assert zero.skip_rate_label == "0% (0 skips)" and zero.as_prompt_facts()["skip_rate_percent"] == 0
    assert "most_skipped_tracks" not in zero.as_prompt_facts()
    # an older mart without the columns
    older = facts_from_row({"user_id": "u", "week_start": "2026-11-16", "plays": 3})
    assert older.skip_rate is None and older.skip_events is None and older.top_skipped_tracks == ()
