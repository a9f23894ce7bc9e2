-- +goose Up
-- Published versions of the privacy policies. Not member data: a version is a public
-- document. A member's acceptance is a consent record (setting "policy/{policy}").
CREATE TABLE policy_versions (
    policy_id         TEXT NOT NULL,
    version_id        TEXT NOT NULL,
    summary           TEXT NOT NULL,
    effective_at      BIGINT NOT NULL,
    lowers_protection BOOLEAN NOT NULL,
    affected_purposes TEXT NOT NULL,     -- JSON array of purpose ids
    created_at        BIGINT NOT NULL,
    -- The change email goes to every member, a page of identity's members at a time:
    -- notify_cursor is the next page's token, notify_done is set after the last page.
    notify_cursor     TEXT NOT NULL,
    notified_count    BIGINT NOT NULL,
    notify_done       BOOLEAN NOT NULL,
    PRIMARY KEY (policy_id, version_id)
);
CREATE INDEX policy_versions_pending ON policy_versions (notify_done);
CREATE INDEX consent_records_setting ON consent_records (member_id, setting);

-- +goose Down
DROP INDEX consent_records_setting;
DROP TABLE policy_versions;
