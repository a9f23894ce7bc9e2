-- +goose Up
-- Restrictions of processing in force (a member's restriction request): while a row
-- exists no marketing is sent and nothing is personalized. Lifting deletes the row; an
-- erasure deletes it too.
CREATE TABLE processing_restrictions (
    member_id     TEXT PRIMARY KEY,
    reference     TEXT NOT NULL,
    restricted_at BIGINT NOT NULL
);

-- +goose Down
DROP TABLE processing_restrictions;
