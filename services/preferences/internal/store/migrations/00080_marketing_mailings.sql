-- +goose Up
-- Marketing mailings (operators, by opaque campaign id): the mailing workflow sends it
-- a page of identity's members at a time; cursor is the next page's token, done is set
-- after the last page. Counts only: which member was sent what is in identity's outbox
-- (each message keyed by mailing and member, so a retried page sends nothing twice).
CREATE TABLE marketing_mailings (
    mailing_id    TEXT PRIMARY KEY,
    channel       INTEGER NOT NULL,
    topic         INTEGER NOT NULL,
    created_by    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    cursor        TEXT NOT NULL,
    sent_count    BIGINT NOT NULL,
    refused_count BIGINT NOT NULL,
    done          BOOLEAN NOT NULL
);

-- +goose Down
DROP TABLE marketing_mailings;
