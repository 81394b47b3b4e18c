"""The local stand-ins for outside services: fake Spotify, fake Gemini, fake MusicBrainz, an SMTP sink.

They are real HTTP/SMTP servers that the real clients (spotipy, google-genai,
Airflow's SMTP provider) talk to; only the outside SaaS behind them is faked.
"""

from __future__ import annotations

import sys

from wrapped_dev.config import Settings
from weekly_wrapped.streaming import process
from wrapped_dev.stack.env import service_env
from weekly_wrapped.streaming.process import Service, port_open


def _specs(settings: Settings) -> list[tuple[Service, list[str], int]]:
    run, logs = settings.state_dir / "run", settings.state_dir / "logs"
    py = sys.executable
    return [
        (Service("fake-spotify", run, logs),
         [py, "-m", "wrapped_dev.fakes.spotify_server", "--port", str(settings.fake_spotify_port)],
         settings.fake_spotify_port),
        (Service("fake-gemini", run, logs),
         [py, "-m", "wrapped_dev.fakes.gemini_server", "--port", str(settings.fake_gemini_port)],
         settings.fake_gemini_port),
        (Service("fake-musicbrainz", run, logs),
         [py, "-m", "wrapped_dev.fakes.musicbrainz_server", "--port", str(settings.fake_musicbrainz_port),
          "--requests-per-second", "0"],  # a mirror of one's own: no limit
         settings.fake_musicbrainz_port),
        (Service("smtp-sink", run, logs),
         [py, "-m", "wrapped_dev.fakes.smtp_sink", "--port", str(settings.smtp_port),
          "--dir", str(settings.mail_dir)],
         settings.smtp_port),
    ]


def services(settings: Settings) -> list[Service]:
    return [svc for svc, _, _ in _specs(settings)]


def start(settings: Settings) -> None:
    env = service_env(settings)
    for svc, argv, port in _specs(settings):
        if not port_open("127.0.0.1", port):
            process.start(svc, argv, env)
    for svc, _, port in _specs(settings):
        process.wait_until(lambda p=port: port_open("127.0.0.1", p), f"{svc.name} on port {port}", 30, svc)


def is_running(settings: Settings) -> bool:
    return all(port_open("127.0.0.1", port) for _, _, port in _specs(settings))


def stop(settings: Settings) -> bool:
    stopped = False
    for svc in services(settings):
        stopped |= process.stop(svc)
    return stopped
