-- +goose Up
-- Per-message delivery: one sender at a time holds a message (claim_id until
-- claimed_until, so a crashed sender's claim expires), failures are retried with backoff
-- (attempts, next_attempt_at), and a message that keeps failing is dead-lettered
-- (dead_at) instead of blocking anything.
ALTER TABLE outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN next_attempt_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN claim_id TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN claimed_until BIGINT NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN dead_at BIGINT;
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE sent_at IS NULL AND dead_at IS NULL;
CREATE INDEX outbox_member ON outbox (member_id) WHERE sent_at IS NULL AND dead_at IS NULL;

-- +goose Down
DROP INDEX outbox_member;
DROP INDEX outbox_due;
ALTER TABLE outbox DROP COLUMN dead_at;
ALTER TABLE outbox DROP COLUMN claimed_until;
ALTER TABLE outbox DROP COLUMN claim_id;
ALTER TABLE outbox DROP COLUMN next_attempt_at;
ALTER TABLE outbox DROP COLUMN attempts;
