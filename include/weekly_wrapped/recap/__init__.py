"""The weekly recap e-mail: facts from `marts.wrapped_weekly`, a Gemini-written intro checked
against those facts, an HTML + text e-mail, and an exactly-once send.

Pure modules: `facts`, `prompt` (numbers and placeholders for Gemini, never names),
`grounding` (checks and fills the answer; the template intro), `content`, `render`.
`ai` writes the intro (Gemini, one retry, else the template) and the opt-in artist
suggestions. I/O at the edges: `gemini` (google-genai), `store` (Postgres), `mailer`
(Airflow's SMTP provider), and `job`, which the `weekly_wrapped` DAG calls.
"""
