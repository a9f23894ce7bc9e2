-- +goose Up
-- When an onward erasure was first sent: the acknowledgement latency metric runs from
-- here (sent_at is the last attempt). Rows sent before this column fall back to sent_at.
ALTER TABLE onward_erasures ADD COLUMN first_sent_at BIGINT;

-- +goose Down
ALTER TABLE onward_erasures DROP COLUMN first_sent_at;
