-- +goose Up
-- Current communication choices; a member with no row has the defaults (transactional on
-- and locked, everything else off until they opt in).
CREATE TABLE subscriptions (
    member_id  TEXT NOT NULL,
    channel    INTEGER NOT NULL,
    topic      INTEGER NOT NULL,
    subscribed BOOLEAN NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (member_id, channel, topic)
);

-- Every change of a choice, for the history view and the export.
CREATE TABLE consent_records (
    id             TEXT PRIMARY KEY,
    member_id      TEXT NOT NULL,
    setting        TEXT NOT NULL,
    value          TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    source         INTEGER NOT NULL,
    created_at     BIGINT NOT NULL
);
CREATE INDEX consent_records_member ON consent_records (member_id, created_at DESC, id DESC);

CREATE TABLE ad_preferences (
    member_id            TEXT PRIMARY KEY,
    personalized_ads     BOOLEAN NOT NULL,
    sale_sharing_opt_out BOOLEAN NOT NULL,
    gpc_at               BIGINT,
    updated_at           BIGINT NOT NULL
);

CREATE TABLE profile_visibility (
    member_id          TEXT PRIMARY KEY,
    display_name       INTEGER NOT NULL,
    viewing_history    INTEGER NOT NULL,
    ratings            INTEGER NOT NULL,
    social_connections INTEGER NOT NULL
);

CREATE TABLE social_connections (
    id                     TEXT PRIMARY KEY,
    member_id              TEXT NOT NULL,
    network                TEXT NOT NULL,
    external_account_ref   TEXT NOT NULL,
    share_viewing_activity BOOLEAN NOT NULL,
    share_ratings          BOOLEAN NOT NULL,
    created_at             BIGINT NOT NULL,
    request_id             TEXT
);
CREATE INDEX social_connections_member ON social_connections (member_id);
CREATE UNIQUE INDEX social_connections_request ON social_connections (request_id);

-- The statistical data. owner is the member id until an erasure re-keys the rows to a
-- random pseudonym that is stored nowhere else.
CREATE TABLE viewing_events (
    id               TEXT PRIMARY KEY,
    owner            TEXT NOT NULL,
    title_id         TEXT NOT NULL,
    view_time        BIGINT NOT NULL,
    duration_seconds BIGINT NOT NULL,
    device_type      TEXT NOT NULL,
    request_id       TEXT
);
CREATE INDEX viewing_events_owner_time ON viewing_events (owner, view_time DESC, id DESC);
CREATE INDEX viewing_events_title ON viewing_events (title_id);
CREATE UNIQUE INDEX viewing_events_request ON viewing_events (request_id);

CREATE TABLE ratings (
    owner      TEXT NOT NULL,
    title_id   TEXT NOT NULL,
    stars      INTEGER NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (owner, title_id)
);
CREATE INDEX ratings_owner_time ON ratings (owner, updated_at DESC, title_id);
CREATE INDEX ratings_title ON ratings (title_id);

-- Idempotency for effects keyed by request id (StopAllMarketing, erasure).
CREATE TABLE request_log (
    request_id TEXT PRIMARY KEY,
    member_id  TEXT NOT NULL,
    kind       TEXT NOT NULL,
    result     BYTEA,
    created_at BIGINT NOT NULL
);

-- +goose Down
DROP TABLE request_log;
DROP TABLE ratings;
DROP TABLE viewing_events;
DROP TABLE social_connections;
DROP TABLE profile_visibility;
DROP TABLE ad_preferences;
DROP TABLE consent_records;
DROP TABLE subscriptions;
