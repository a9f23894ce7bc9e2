-- +goose Up
-- Personal data lives only in members.pii, encrypted under the member's own data key
-- (members.wrapped_key, itself encrypted under the KEK). Erasure deletes the row and
-- with it the key; the tombstone keeps no personal data.
CREATE TABLE members (
    id                TEXT PRIMARY KEY,
    state             INTEGER NOT NULL,
    email_index       BYTEA NOT NULL,
    pii               BYTEA NOT NULL,
    wrapped_key       BYTEA NOT NULL,
    password_hash     TEXT NOT NULL,
    create_request_id TEXT,
    version           BIGINT NOT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
-- One live account per normalized email: disabled accounts keep theirs until erased.
CREATE UNIQUE INDEX members_email_index ON members (email_index);
CREATE UNIQUE INDEX members_create_request ON members (create_request_id);
CREATE INDEX members_created ON members (created_at, id);

CREATE TABLE sessions (
    id                 TEXT PRIMARY KEY,
    member_id          TEXT NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    device             BYTEA NOT NULL,
    remember_me        BOOLEAN NOT NULL,
    refresh_hash       BYTEA NOT NULL,
    prev_refresh_hash  BYTEA,
    created_at         BIGINT NOT NULL,
    last_used_at       BIGINT NOT NULL,
    expires_at         BIGINT NOT NULL,
    revoked_at         BIGINT
);
CREATE UNIQUE INDEX sessions_refresh ON sessions (refresh_hash);
CREATE INDEX sessions_prev_refresh ON sessions (prev_refresh_hash);
CREATE INDEX sessions_member ON sessions (member_id, created_at);

CREATE TABLE verification_codes (
    id          TEXT PRIMARY KEY,
    member_id   TEXT NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    code_hash   BYTEA NOT NULL,
    purpose     INTEGER NOT NULL,
    reference   TEXT NOT NULL,
    attempts    INTEGER NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);
CREATE INDEX verification_codes_member ON verification_codes (member_id, created_at);

-- Messages to members. The payload (address and body) is encrypted under the member's
-- data key, so an erased member's unsent mail is unreadable too.
CREATE TABLE outbox (
    id          TEXT PRIMARY KEY,
    member_id   TEXT NOT NULL REFERENCES members (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    payload     BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    sent_at     BIGINT
);
CREATE INDEX outbox_pending ON outbox (sent_at, created_at);

-- Events for other services (e.g. child_reported → fulfillment starts expedited
-- erasure). Opaque ids only.
CREATE TABLE events (
    id          TEXT PRIMARY KEY,
    member_id   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    consumed_at BIGINT
);
CREATE INDEX events_pending ON events (consumed_at, created_at);

CREATE TABLE sign_in_failures (
    key          BYTEA PRIMARY KEY,
    count        INTEGER NOT NULL,
    window_start BIGINT NOT NULL
);

-- What remains of an erased member: no personal data, so a retried or late request is
-- answered idempotently and the id is never reused.
CREATE TABLE tombstones (
    member_id    TEXT PRIMARY KEY,
    tombstone_id TEXT NOT NULL,
    request_id   TEXT NOT NULL,
    erased_at    BIGINT NOT NULL,
    result       BYTEA NOT NULL
);

-- +goose Down
DROP TABLE tombstones;
DROP TABLE sign_in_failures;
DROP TABLE events;
DROP TABLE outbox;
DROP TABLE verification_codes;
DROP TABLE sessions;
DROP TABLE members;
