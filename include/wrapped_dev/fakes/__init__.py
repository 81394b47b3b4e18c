"""Local stand-ins for outside SaaS (Spotify, Gemini) and for an SMTP server.

Each one speaks the real protocol, so the real client libraries talk to it.
"""
