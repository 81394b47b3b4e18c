"""The listener's own page at /wrapped/me: the week so far, past recaps, the household."""
