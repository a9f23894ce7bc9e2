-- +goose Up
-- Restrictions of processing in force (a member's restriction request): while a row
-- exists, every disclosure of the member's data is refused. Lifting deletes the row;
-- an erasure deletes it too.
CREATE TABLE restrictions (
    member_id     TEXT PRIMARY KEY,
    reference     TEXT NOT NULL,
    restricted_at BIGINT NOT NULL
);

-- +goose Down
DROP TABLE restrictions;
