-- +goose Up
-- Members' complaints about their data (Trakt §8), tracked to an acknowledgement and a
-- resolution deadline. The row is the record of the complaint and stays after the
-- member's erasure (opaque member id, like requests); the free texts are cleared then.
CREATE TABLE complaints (
    id               TEXT PRIMARY KEY,
    member_id        TEXT NOT NULL,
    request_id       TEXT NOT NULL,
    category         INTEGER NOT NULL,
    description      TEXT NOT NULL,
    related_requests TEXT NOT NULL,      -- JSON array of request ids
    state            INTEGER NOT NULL,   -- lethe.fulfillment.v1.ComplaintState
    created_at       BIGINT NOT NULL,
    ack_due_at       BIGINT NOT NULL,
    resolve_due_at   BIGINT NOT NULL,
    acked_at         BIGINT,
    resolved_at      BIGINT,
    resolution       TEXT NOT NULL
);
CREATE UNIQUE INDEX complaints_request ON complaints (member_id, request_id);
CREATE INDEX complaints_member ON complaints (member_id, created_at);
CREATE INDEX complaints_open ON complaints (state, resolve_due_at);

CREATE TABLE complaint_escalations (
    complaint_id TEXT NOT NULL,
    level        TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (complaint_id, level)
);

-- +goose Down
DROP TABLE complaint_escalations;
DROP TABLE complaints;
