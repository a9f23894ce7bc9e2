-- +goose Up
-- Denials: the coded reason, the operator's explanation (no personal data) and who.
ALTER TABLE requests ADD COLUMN denial_reason INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN denial_explanation TEXT NOT NULL DEFAULT '';
ALTER TABLE requests ADD COLUMN denied_by TEXT NOT NULL DEFAULT '';
-- Objection requests: what is objected to (sharing purpose and partner ids, or direct
-- marketing) — opaque ids, no personal data.
ALTER TABLE requests ADD COLUMN objection_purpose TEXT NOT NULL DEFAULT '';
ALTER TABLE requests ADD COLUMN objection_partner TEXT NOT NULL DEFAULT '';
ALTER TABLE requests ADD COLUMN objection_marketing BOOLEAN NOT NULL DEFAULT FALSE;
-- Restriction requests: when the restriction was lifted (NULL while in force).
ALTER TABLE requests ADD COLUMN restriction_lifted_at BIGINT;
-- When receipt was confirmed to the member (CCPA acknowledgement).
ALTER TABLE requests ADD COLUMN acknowledged_at BIGINT;

-- A rectification's asserted value and statement are personal data: they live here,
-- apart from the request record, only until the review (then value and statement are
-- emptied), and an erasure of the member deletes the row.
CREATE TABLE rectifications (
    request_id  TEXT PRIMARY KEY,
    member_id   TEXT NOT NULL,
    field       INTEGER NOT NULL,
    value       TEXT NOT NULL,
    statement   TEXT NOT NULL,
    approved    BOOLEAN NOT NULL DEFAULT FALSE,
    reviewed_by TEXT NOT NULL DEFAULT '',
    reviewed_at BIGINT
);
CREATE INDEX rectifications_member ON rectifications (member_id);

-- +goose Down
DROP TABLE rectifications;
ALTER TABLE requests DROP COLUMN acknowledged_at;
ALTER TABLE requests DROP COLUMN restriction_lifted_at;
ALTER TABLE requests DROP COLUMN objection_marketing;
ALTER TABLE requests DROP COLUMN objection_partner;
ALTER TABLE requests DROP COLUMN objection_purpose;
ALTER TABLE requests DROP COLUMN denied_by;
ALTER TABLE requests DROP COLUMN denial_explanation;
ALTER TABLE requests DROP COLUMN denial_reason;
