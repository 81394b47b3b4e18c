"""Ingestion: Spotify listening into the four Kafka streams. Pure parts and I/O kept apart.

- `poll`               hourly, per user: recently-played since the cursor, metadata, produce, move
                       the cursor only after Kafka acknowledged (`ingest_users`, `plan_batches`)
- `history_import`     a privacy export, validated whole, then produced (`import_export`), with a report
- `export_files`       finding and strictly decoding an export's files (zip, folder, files), by content
- `metadata_backfill`  full metadata for tracks known only from exports, a bounded slice per run
- `track_resolution`   Spotify ids for tracks an account-data export names without one (search,
                       once per name pair, a bounded slice per run)
- `catalogue`          what those two share: budget, a borrowed token, error steps, produce-then-mark
- `genres`             artist genres from MusicBrainz's tags (opt-in), each artist once, 1 request/s
- `store`              ingestion's tables: cursors, outcomes, gaps, the entity cache (I/O)
- `producer`           the idempotent Kafka producer with delivery reports (I/O)

Talking to Spotify (client, error policy, rate limit) is `weekly_wrapped.spotify.client`;
turning its payloads into messages is `weekly_wrapped.spotify.payloads` (pure).
"""
