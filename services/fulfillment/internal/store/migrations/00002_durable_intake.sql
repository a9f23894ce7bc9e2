-- +goose Up
-- Durable intake: what the workflow needs to be (re)started from the row alone, and
-- whether its start was confirmed. Closed requests are done; open ones are checked once
-- by the reconciler.
ALTER TABLE requests ADD COLUMN verified BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE requests ADD COLUMN workflow_started BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE requests SET workflow_started = TRUE WHERE NOT is_open;
CREATE INDEX requests_unstarted ON requests (workflow_started, created_at);

-- +goose Down
DROP INDEX requests_unstarted;
ALTER TABLE requests DROP COLUMN workflow_started;
ALTER TABLE requests DROP COLUMN verified;
