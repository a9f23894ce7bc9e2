-- +goose Up
-- The audit log of operator actions: who (operator id), what (RPC or "download"), on
-- which resource (opaque names), why, when. Append-only; kept as the accountability
-- record (no member data beyond opaque ids in target).
CREATE TABLE audit_log (
    id         TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    reason     TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX audit_log_request ON audit_log (request_id);
CREATE INDEX audit_log_time ON audit_log (created_at, id);

-- The operator who extended a request or put it on hold (operators/{id}).
ALTER TABLE requests ADD COLUMN extended_by TEXT NOT NULL DEFAULT '';
ALTER TABLE requests ADD COLUMN hold_by TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE requests DROP COLUMN hold_by;
ALTER TABLE requests DROP COLUMN extended_by;
DROP TABLE audit_log;
