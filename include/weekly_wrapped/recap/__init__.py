"""The weekly recap e-mail: facts from `marts.wrapped_weekly`, a Gemini-written intro checked
against those facts, an HTML + text e-mail, and an exactly-once send.

Pure modules: `facts`, `prompt` (numbers and placeholders for Gemini, never names),
`grounding` (checks and fills the answer; the template intro), `content`, `render` (the
e-mail), `charts` (its pictures, PNG), `formats` (durations, weekdays and hours in the user's locale).
`ai` writes the intro (Gemini, one retry, else the template) and the opt-in artist
suggestions. I/O at the edges: `gemini` (google-genai), `store` (Postgres), `mailer`
(Airflow's SMTP provider), `preview` (any user's recap to a file, unsent), and `job`, which
the `weekly_wrapped` DAG calls.
"""
