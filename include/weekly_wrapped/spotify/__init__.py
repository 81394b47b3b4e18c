"""Spotify: the spotipy client with our error policy (`client`), and its payloads as messages (`payloads`, pure)."""
