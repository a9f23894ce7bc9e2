-- +goose Up
-- A disclosure's idempotency key is scoped to (member, partner, purpose): another
-- member reusing a request id gets their own decision, never someone else's entry.
DROP INDEX disclosures_request;
CREATE UNIQUE INDEX disclosures_request ON disclosures (subject, partner_id, purpose_id, request_id);

-- Members erased here, by keyed hash (like blocks): writes for them are refused, so
-- an objection or notice in flight during the erasure cannot bring a row back.
CREATE TABLE erased_members (
    member_hash TEXT PRIMARY KEY,
    erased_at   BIGINT NOT NULL
);

-- +goose Down
DROP TABLE erased_members;
DROP INDEX disclosures_request;
CREATE UNIQUE INDEX disclosures_request ON disclosures (request_id);
