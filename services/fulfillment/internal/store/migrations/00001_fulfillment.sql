-- +goose Up
-- The read model of privacy requests. member_id is the opaque member id; no other
-- personal data is stored here.
CREATE TABLE requests (
    id                 TEXT PRIMARY KEY,
    member_id          TEXT NOT NULL,
    kind               INTEGER NOT NULL,
    jurisdiction       INTEGER NOT NULL,
    origin             INTEGER NOT NULL,
    state              INTEGER NOT NULL,
    is_open            BOOLEAN NOT NULL,
    client_request_id  TEXT,
    created_at         BIGINT NOT NULL,
    due_at             BIGINT NOT NULL,
    completed_at       BIGINT,
    extended           BOOLEAN NOT NULL,
    extension_reason   TEXT NOT NULL,
    hold_reason        TEXT NOT NULL,
    cooling_off_end    BIGINT,
    progress           TEXT NOT NULL,      -- JSON list of steps
    challenge_id       TEXT NOT NULL,
    tombstone_id       TEXT NOT NULL,
    archive_path       TEXT NOT NULL,
    archive_size       BIGINT NOT NULL,
    archive_sha256     TEXT NOT NULL,
    archive_expires_at BIGINT,
    receipt_payload    BYTEA,
    receipt_signature  BYTEA,
    receipt_token_hash BYTEA,
    breached           BOOLEAN NOT NULL
);
CREATE UNIQUE INDEX requests_client ON requests (member_id, client_request_id);
-- At most one open request of each kind per member.
CREATE UNIQUE INDEX requests_open ON requests (member_id, kind) WHERE is_open;
CREATE INDEX requests_due ON requests (is_open, due_at);
CREATE INDEX requests_member ON requests (member_id, created_at);

-- Messages to members about their requests (extension notices, erasure confirmation):
-- ids and kinds only; a mailer resolves the address through identity before erasure.
CREATE TABLE notifications (
    id         TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    kind       TEXT NOT NULL,
    detail     TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX notifications_once ON notifications (request_id, kind);

-- Escalations at 50% and 80% of the time to the due date, and breaches.
CREATE TABLE escalations (
    request_id TEXT NOT NULL,
    level      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (request_id, level)
);

CREATE TABLE downloads (
    id          TEXT PRIMARY KEY,
    request_id  TEXT NOT NULL,
    downloaded_at BIGINT NOT NULL
);

-- +goose Down
DROP TABLE downloads;
DROP TABLE escalations;
DROP TABLE notifications;
DROP TABLE requests;
