"""Weekly Wrapped: Spotify listening -> Kafka -> Spark -> Postgres -> dbt -> a weekly recap e-mail.

The product, split by stage; `dags/`, `plugins/` and `spark/` import only this package:

- `contracts`   topics, message fields and the natural keys every stage agrees on
- `db`          the warehouse connection and our own tables (`sql/schema.sql`)
- `airflow/`    Assets and the Connections/Variables read into plain values (the only Airflow imports)
- `spotify/`    the spotipy client with our error policy, and payloads -> messages
- `ingest/`     hourly polling, the privacy-export import, the metadata backfill, the Kafka producer
- `users/`      accounts (encrypted tokens, status) and the onboarding page
- `streaming/`  the Spark consumer's pure parts, its sink, and the supervisor that keeps it alive
- `marts/`      running dbt
- `recap/`      the weekly e-mail: facts, prompt, grounding, render, Gemini, store, mailer, job

The local stack, the fakes, the CLI and the demo are `wrapped_dev`, which this package never imports.
"""

from pathlib import Path

# The checkout (or image) holding dags/, spark/ and dbt_project/ beside include/.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
