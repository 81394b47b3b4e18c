"""The weekly recap e-mail: facts from `marts.wrapped_weekly`, a Gemini-written intro checked
against those facts, an HTML + text e-mail, and an exactly-once send.

Pure modules: `facts`, `prompt`, `grounding`, `render`. I/O at the edges: `gemini`
(google-genai), `store` (Postgres), `mailer` (Airflow's SMTP provider), and `job`, which
the `weekly_wrapped` DAG calls.
"""
