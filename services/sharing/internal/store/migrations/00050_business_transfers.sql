-- +goose Up
-- Business transfers (a merger, acquisition or sale of assets): data may flow to the
-- acquirer from effective_at, through AuthorizeDisclosure, for members who did not
-- object to their notice. Members are given notice a page of identity's members at a
-- time: notify_cursor is the next page's token.
CREATE TABLE business_transfers (
    id              TEXT PRIMARY KEY,
    partner_id      TEXT NOT NULL REFERENCES partners (id),
    purpose_id      TEXT NOT NULL,
    data_categories TEXT NOT NULL,      -- JSON array, sorted
    effective_at    BIGINT NOT NULL,
    state           INTEGER NOT NULL,   -- lethe.sharing.v1.BusinessTransferState
    notify_cursor   TEXT NOT NULL,
    notified_count  BIGINT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX business_transfers_partner ON business_transfers (partner_id, purpose_id);

-- +goose Down
DROP TABLE business_transfers;
