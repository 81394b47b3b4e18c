-- The warehouse's own tables (dbt owns staging/intermediate/marts).
-- Idempotent: applied by `wrapped up`, by the Spark consumer at start and by tests; skipped where
-- ops.schema_applied holds this file's hash (db.apply_schema).

create schema if not exists raw;
create schema if not exists ops;
create schema if not exists app;

-- raw: written only by the Spark consumer, upserted on natural keys.
create table if not exists raw.plays (
    user_id         text        not null,
    played_at       timestamptz not null,   -- END of the play (UTC), as Spotify reports it
    track_id        text        not null,
    context_uri     text,
    source          text        not null,   -- api / export / demo
    ms_played       bigint,
    ingested_at     timestamptz not null,
    kafka_partition int,
    kafka_offset    bigint,
    loaded_at       timestamptz not null default now(),
    primary key (user_id, played_at, track_id)
);
-- Added after the first release: how an exported play ended (null from the API).
alter table raw.plays add column if not exists reason_end text;
alter table raw.plays add column if not exists shuffle boolean;
alter table raw.plays add column if not exists offline boolean;
-- The hourly dbt build reads the rows loaded since the last one (fct_plays, the staging tests).
create index if not exists plays_loaded_at on raw.plays (loaded_at);

create table if not exists raw.tracks (
    track_id     text primary key,
    name         text not null,
    duration_ms  bigint,
    explicit     boolean,
    popularity   int,
    album_id     text,
    artist_ids   text[],
    track_number int,
    fetched_at   timestamptz not null,
    loaded_at    timestamptz not null default now()
);

create table if not exists raw.albums (
    album_id               text primary key,
    name                   text not null,
    album_type             text,
    release_date           text,
    release_date_precision text,
    artist_ids             text[],
    image_url              text,
    fetched_at             timestamptz not null,
    loaded_at              timestamptz not null default now()
);

create table if not exists raw.artists (
    artist_id  text primary key,
    name       text not null,
    genres     text[],
    popularity int,
    followers  bigint,
    image_url  text,
    fetched_at timestamptz not null,
    loaded_at  timestamptz not null default now()
);

-- ops: what the consumer could not load, and what it did.
create table if not exists ops.dead_letters (
    id          bigserial primary key,
    topic       text   not null,
    "partition" int    not null,
    "offset"    bigint not null,
    payload     text,
    error       text   not null,
    received_at timestamptz not null default now(),
    unique (topic, "partition", "offset")
);

create table if not exists ops.consumer_batches (
    query_id     text   not null,
    batch_id     bigint not null,
    input_rows   bigint not null,
    plays_rows   bigint not null default 0,
    dead_letters bigint not null default 0,
    duration_ms  bigint,
    end_offsets  jsonb,          -- {"topic": {"partition": next offset}} after this batch
    committed_at timestamptz not null default now(),
    primary key (query_id, batch_id)
);

-- app: people, their consent, and where ingestion stands for each.
create table if not exists app.users (
    user_id                 text primary key,          -- Spotify user id
    display_name            text,
    email                   text not null,             -- asked for at onboarding
    time_zone               text not null default 'UTC',  -- IANA name
    refresh_token_encrypted text,                      -- MultiFernet, keys of wrapped_token_secret (users.tokens)
    consent_at              timestamptz,
    status                  text not null default 'active'
        check (status in ('active', 'needs_reauth', 'unsubscribed')),
    status_reason           text,
    created_at              timestamptz not null default now(),
    updated_at              timestamptz not null default now()
);
-- The recap's weekday and hour formats (a Babel/CLDR locale such as 'de' or 'pt_BR'; null: English).
alter table app.users add column if not exists locale text;
-- Double opt-in (weekly_wrapped.users.addresses): recaps go only to a confirmed address. Rows from
-- before count as confirmed (the default fills them once), new rows start unconfirmed.
alter table app.users add column if not exists email_confirmed_at timestamptz default now();
alter table app.users alter column email_confirmed_at drop default;
-- A new address waiting for its confirmation; `email` stays in use until then.
alter table app.users add column if not exists pending_email text;
-- When "delete my data" last mailed its confirmation link (weekly_wrapped.users.leaving): at
-- most one such e-mail per DELETE_MAIL_EVERY, so the page cannot be used to flood an inbox.
alter table app.users add column if not exists delete_mail_sent_at timestamptz;
-- One's page (weekly_wrapped.page.app): "pause e-mails" (the recap job skips paused users), and
-- when its "send me a link" form last mailed a link (at most one per PAGE_LINK_MAIL_EVERY_S).
alter table app.users add column if not exists recaps_paused boolean not null default false;
alter table app.users add column if not exists page_link_mail_sent_at timestamptz;
-- Exports uploaded on one's page, each imported by a spotify_history_import run (page.imports).
create table if not exists app.page_imports (
    run_id      text primary key,          -- the spotify_history_import DAG run
    user_id     text not null references app.users (user_id),
    path        text not null,             -- the saved zip, as the workers see it
    uploaded_at timestamptz not null default now()
);
-- The household (weekly_wrapped.page.household): only people who opted in are matched with one
-- another, named on each other's page and in each other's recap; opting out takes effect at once.
alter table app.users add column if not exists household_opt_in boolean not null default false;

-- Who may join outside demo mode (weekly_wrapped.users.invites): one code per person, stored
-- only as its SHA-256; revocable; claimed by the first Spotify account that joins with it.
create table if not exists app.invites (
    code_sha256 text primary key,
    label       text not null unique,      -- whom the operator gave it to, e.g. "ana"
    created_at  timestamptz not null default now(),
    revoked_at  timestamptz,
    used_by     text references app.users (user_id) on delete set null,
    used_at     timestamptz
);
-- Invite codes tried on the onboarding page, for its rate limit (rows older than a day are dropped).
create table if not exists app.onboarding_attempts (
    id          bigserial primary key,
    code_sha256 text,                      -- what was typed, hashed (null: nothing typed)
    succeeded   boolean not null,
    at          timestamptz not null default now()
);
create index if not exists onboarding_attempts_at on app.onboarding_attempts (at);
-- OAuth states already used at the callback, kept until they expire: a replayed callback fails.
create table if not exists app.oauth_states_used (
    state_sha256 text primary key,
    expires_at   timestamptz not null
);

create table if not exists app.ingest_cursors (
    user_id    text primary key references app.users (user_id),
    after_ms   bigint not null,   -- played_at (epoch ms) of the newest play Kafka acknowledged
    updated_at timestamptz not null default now()
);

create table if not exists app.ingest_gaps (
    user_id     text not null references app.users (user_id),
    gap_from    timestamptz not null,   -- the cursor before the poll
    gap_to      timestamptz not null,   -- the oldest play the poll returned
    detected_at timestamptz not null default now(),
    primary key (user_id, gap_from, gap_to)
);

create table if not exists app.ingest_outcomes (
    id         bigserial primary key,
    run_id     text,
    user_id    text not null,
    outcome    text not null,   -- ok / rate_limited / needs_reauth / failed
    plays      int  not null default 0,
    reason     text,
    retry_at   timestamptz,
    created_at timestamptz not null default now()
);
-- The recap's readiness check asks each user's last successful poll (weekly_wrapped.recap.store).
create index if not exists ingest_outcomes_ok on app.ingest_outcomes (user_id, created_at) where outcome = 'ok';

-- The Spotify app's request budget, shared by every process that polls (ingest.budget): the
-- next free request slot; each request moves it 1/rate seconds on.
create table if not exists app.request_budget (
    name text primary key,  -- the Spotify app's client id and API base
    next_at timestamptz not null
);

-- Tracks/albums/artists ingestion already produced to Kafka: metadata is looked up and
-- produced once per entity, not on every poll (written with the cursor, after Kafka acked).
create table if not exists app.entity_cache (
    entity_type text not null,   -- track / album / artist
    entity_id   text not null,
    cached_at   timestamptz not null default now(),
    primary key (entity_type, entity_id)
);

-- Tracks known only by name (from a privacy export) whose full metadata the hourly
-- metadata backfill still has to fetch (weekly_wrapped.metadata_backfill). No foreign key
-- to app.users: `user_id` only says whose export queued the track (and whose token to try).
create table if not exists app.metadata_backlog (
    track_id   text primary key,
    user_id    text not null,
    queued_at  timestamptz not null default now(),
    done_at    timestamptz,             -- produced to Kafka (or gone from Spotify, see last_error)
    attempts   int not null default 0,  -- failed look-ups; given up at metadata_backfill.MAX_ATTEMPTS
    last_error text
);
create index if not exists metadata_backlog_pending on app.metadata_backlog (attempts, queued_at)
    where done_at is null;

-- Tracks an account-data export names without an id ("name:track:..." keys, see contracts.name_key),
-- resolved to Spotify ids through the search endpoint, once per name pair, a budget per run.
create table if not exists app.track_resolutions (
    name_key    text primary key,            -- contracts.name_key("track", artist, track)
    artist_name text not null,
    track_name  text not null,
    user_id     text not null,               -- whose export named it (whose token may search)
    queued_at   timestamptz not null default now(),
    track_id    text,                        -- the Spotify id found; null: not (yet) found
    resolved_at timestamptz,                 -- set when found, or when given up (not_found)
    status      text not null default 'pending',  -- pending / resolved / not_found
    attempts    int not null default 0,
    last_error  text
);
create index if not exists track_resolutions_pending on app.track_resolutions (attempts, queued_at)
    where status = 'pending';

-- Artist genres from MusicBrainz's tags (weekly_wrapped.ingest.genres), for installations that
-- enable it: each artist is looked up once, and a miss (status 'not_found') is kept too, so it is
-- never asked again. `genres` is empty when MusicBrainz knows the artist but none of its tags is a genre.
create table if not exists app.artist_genres (
    artist_id      text primary key,
    artist_name    text not null,               -- the name that was searched
    genres         text[] not null default '{}',
    source         text not null default 'musicbrainz',
    status         text not null check (status in ('found', 'not_found')),
    musicbrainz_id text,                        -- the MusicBrainz artist the genres came from
    fetched_at     timestamptz not null default now()
);

create table if not exists app.sent_emails (
    user_id    text not null references app.users (user_id),
    week_start date not null,          -- Monday, in the user's time zone
    recipient  text not null,
    message_id text not null,
    subject    text not null,
    sent_at    timestamptz not null default now(),
    primary key (user_id, week_start)
);
-- Added with the exactly-once send (weekly_wrapped.recap.store): the message is rendered
-- once and its bytes stored; every attempt sends those bytes. Rows from before are 'sent'.
--   rendered -> sending -> sent | unknown (accepted-but-reply-lost: resent only by policy)
--   sending -> rendered on a definite failure (the next attempt sends the same bytes)
alter table app.sent_emails add column if not exists status text not null default 'sent';
alter table app.sent_emails add column if not exists message bytea;            -- exactly what goes out
alter table app.sent_emails add column if not exists rendered_at timestamptz;
alter table app.sent_emails add column if not exists attempts int not null default 0;
alter table app.sent_emails add column if not exists last_attempt_at timestamptz;
alter table app.sent_emails add column if not exists last_error text;
alter table app.sent_emails add column if not exists unknown_outcomes int not null default 0;  -- attempts that ended unknown
alter table app.sent_emails alter column sent_at drop not null;              -- set when the server accepted
alter table app.sent_emails alter column sent_at drop default;
do $$ begin
    alter table app.sent_emails add constraint sent_emails_status_check
        check (status in ('rendered', 'sending', 'sent', 'unknown'));
exception when duplicate_object then null;
end $$;

-- Consent e-mails (weekly_wrapped.users.consent): the reminder two weeks before the refresh token's
-- six months run out, and the "reconnect" notice once a user is needs_reauth. Each is sent once per
-- consent: one sent before the current consent_at (the user reconnected since) no longer counts.
alter table app.users add column if not exists consent_reminder_sent_at timestamptz;
alter table app.users add column if not exists reauth_notice_sent_at timestamptz;

-- Operator alerts (weekly_wrapped.alerts): one row per problem, mailed once per occurrence.
-- A problem that is resolved and comes back is a new occurrence (first_seen_at again, mailed again).
create table if not exists app.alerts (
    problem_key    text primary key,       -- e.g. dag_failed:spotify_ingest, stale_poll:<user id>
    summary        text not null,          -- the line the e-mail shows (latest seen)
    first_seen_at  timestamptz not null default now(),  -- start of the current occurrence
    last_seen_at   timestamptz not null default now(),
    last_mailed_at timestamptz,            -- null: not mailed yet in this occurrence
    resolved_at    timestamptz             -- null: still a problem
);

-- People who deleted their data (users.leaving): a SHA-256 of the id, never the id, so that plays
-- of theirs still in Kafka at that moment are not loaded afterwards (streaming.sink). Joining
-- again removes the row.
create table if not exists app.deleted_users (
    user_id_sha256 text primary key,  -- encode(sha256(convert_to(user_id, 'UTF8')), 'hex')
    deleted_at     timestamptz not null default now()
);

-- The hash of this file as last applied: db.apply_schema skips a warehouse already at it.
create table if not exists ops.schema_applied (
    singleton  boolean primary key default true check (singleton),
    sha256     text        not null,
    applied_at timestamptz not null
);
