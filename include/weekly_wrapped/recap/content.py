"""What the AI part gives the e-mail: the intro, a listening personality and recommendations.

`weekly_wrapped.recap.ai.write_intro` produces an `Intro`; `render.build_message` shows it.
Every name in `text` and `personality` was filled in by our code from placeholders, never
typed by the model.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recommendation:
    artist_name: str  # as Spotify's search returned it
    spotify_url: str  # https://open.spotify.com/artist/<id>
    image_url: str | None = None


@dataclass(frozen=True)
class Intro:
    text: str
    source: str  # "gemini" or "template"
    personality: str | None = None
    recommendations: tuple[Recommendation, ...] = ()

    @property
    def written_by_ai(self) -> bool:
        return self.source == "gemini"
