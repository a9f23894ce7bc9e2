-- +goose Up
CREATE TABLE partners (
    id               TEXT PRIMARY KEY,
    display_name     TEXT NOT NULL,
    kind             INTEGER NOT NULL,
    purposes         TEXT NOT NULL,      -- JSON array
    data_categories  TEXT NOT NULL,      -- JSON array of fideslang categories
    agreement_ref    TEXT NOT NULL,
    webhook_url      TEXT NOT NULL,
    webhook_secret   BYTEA,              -- AES-256-GCM under the service key
    ack_deadline_s   BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    version          BIGINT NOT NULL
);

CREATE TABLE purposes (
    partner_id      TEXT NOT NULL REFERENCES partners (id),
    purpose_id      TEXT NOT NULL,
    description     TEXT NOT NULL,
    data_categories TEXT NOT NULL,
    legal_basis     TEXT NOT NULL,
    notice_period_s BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (partner_id, purpose_id)
);

CREATE TABLE notices (
    id           TEXT PRIMARY KEY,
    member_id    TEXT NOT NULL,
    partner_id   TEXT NOT NULL,
    purpose_id   TEXT NOT NULL,
    state        INTEGER NOT NULL,
    notify_at    BIGINT,
    effective_at BIGINT,
    created_at   BIGINT NOT NULL
);
CREATE UNIQUE INDEX notices_member_purpose ON notices (member_id, partner_id, purpose_id);

CREATE TABLE objections (
    id           TEXT PRIMARY KEY,
    member_id    TEXT NOT NULL,
    partner_id   TEXT NOT NULL,
    purpose_id   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    withdrawn_at BIGINT,
    request_id   TEXT
);
CREATE INDEX objections_member ON objections (member_id, created_at);
CREATE UNIQUE INDEX objections_request ON objections (request_id);

-- The disclosure log: append-only, hash-chained per subject. subject is the member id,
-- replaced by the erasure tombstone id when the member is erased; the hash does not
-- cover it, so the chain still verifies under the tombstone.
CREATE TABLE disclosures (
    subject         TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    partner_id      TEXT NOT NULL,
    purpose_id      TEXT NOT NULL,
    data_categories TEXT NOT NULL,
    legal_basis     TEXT NOT NULL,
    disclosed_at    BIGINT NOT NULL,
    prev_hash       TEXT NOT NULL,
    hash            TEXT NOT NULL,
    request_id      TEXT,
    PRIMARY KEY (subject, seq)
);
CREATE UNIQUE INDEX disclosures_request ON disclosures (request_id);
CREATE INDEX disclosures_partner ON disclosures (subject, partner_id);

-- Members whose data may no longer flow, by keyed hash (so the block outlives erasure
-- without keeping the member id).
CREATE TABLE blocks (
    member_hash TEXT PRIMARY KEY,
    blocked_at  BIGINT NOT NULL
);

-- Refused disclosures, for operators: reasons and partners only, no member ids.
CREATE TABLE denials (
    id         TEXT PRIMARY KEY,
    partner_id TEXT NOT NULL,
    purpose_id TEXT NOT NULL,
    reason     TEXT NOT NULL,
    denied_at  BIGINT NOT NULL
);

CREATE TABLE onward_erasures (
    id          TEXT PRIMARY KEY,
    partner_id  TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    pseudonym   TEXT NOT NULL,
    state       INTEGER NOT NULL,
    attempts    INTEGER NOT NULL,
    sent_at     BIGINT,
    acked_at    BIGINT,
    last_error  TEXT NOT NULL
);
CREATE UNIQUE INDEX onward_erasures_request ON onward_erasures (request_id, partner_id);

CREATE TABLE callback_nonces (
    nonce       TEXT PRIMARY KEY,
    received_at BIGINT NOT NULL
);

CREATE TABLE rejected_callbacks (
    id          TEXT PRIMARY KEY,
    partner_id  TEXT NOT NULL,
    reason      TEXT NOT NULL,
    received_at BIGINT NOT NULL
);

CREATE TABLE erasures (
    request_id TEXT PRIMARY KEY,
    result     BYTEA NOT NULL
);

-- +goose Down
DROP TABLE erasures;
DROP TABLE rejected_callbacks;
DROP TABLE callback_nonces;
DROP TABLE onward_erasures;
DROP TABLE denials;
DROP TABLE blocks;
DROP TABLE disclosures;
DROP TABLE objections;
DROP TABLE notices;
DROP TABLE purposes;
DROP TABLE partners;
