-- +goose Up
-- Members erased here, by SHA-256 of their opaque id: writes for them are refused (an
-- old unsubscribe link, a call in flight during the erasure) so no row comes back.
CREATE TABLE erased_members (
    member_hash BYTEA PRIMARY KEY,
    erased_at   BIGINT NOT NULL
);

-- Idempotency keys are per member: another member reusing a request id is a new
-- request, not a unique-index failure.
DROP INDEX viewing_events_request;
CREATE UNIQUE INDEX viewing_events_request ON viewing_events (owner, request_id);
DROP INDEX social_connections_request;
CREATE UNIQUE INDEX social_connections_request ON social_connections (member_id, request_id);

-- +goose Down
DROP INDEX social_connections_request;
CREATE UNIQUE INDEX social_connections_request ON social_connections (request_id);
DROP INDEX viewing_events_request;
CREATE UNIQUE INDEX viewing_events_request ON viewing_events (request_id);
DROP TABLE erased_members;
