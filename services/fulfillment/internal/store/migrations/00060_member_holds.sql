-- +goose Up
-- Legal holds on all of one member's data (operators): while active (not released, not
-- expired) every deletion path refuses or waits. One row per member; setting again
-- replaces it. Kept after release as the record of the hold (the audit log has who did what).
CREATE TABLE member_holds (
    member_id   TEXT PRIMARY KEY,
    reason      TEXT NOT NULL,
    expire_at   BIGINT NOT NULL,
    set_by      TEXT NOT NULL,
    set_at      BIGINT NOT NULL,
    released_at BIGINT
);

-- +goose Down
DROP TABLE member_holds;
