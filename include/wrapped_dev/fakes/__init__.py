"""Local stand-ins for outside SaaS (Spotify, Gemini) and for an SMTP server.

Each one speaks the real protocol, so the real client libraries talk to it.
"""


def serve_until_interrupted(server) -> None:
    """Run an http.server until Ctrl-C (or SIGTERM's default exit), then close its socket."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
