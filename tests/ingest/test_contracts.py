"""The contract helpers every producer shares."""

from weekly_wrapped import contracts


def test_name_keys_are_stable_across_case_spacing_and_unicode_forms():
    composed = contracts.name_key("artist", "Sigur Rós")
    decomposed = contracts.name_key("artist", " sigur ro\u0301s ")
    assert composed == decomposed
    assert composed.startswith("name:artist:") and contracts.is_name_key(composed)


def test_name_keys_tell_kinds_and_name_pairs_apart():
    assert contracts.name_key("track", "A", "B") != contracts.name_key("album", "A", "B")
    assert contracts.name_key("track", "A B", "C") != contracts.name_key("track", "A", "B C")
    assert not contracts.is_name_key("4uLU6hMCjMI75M1A2tKUQC")
