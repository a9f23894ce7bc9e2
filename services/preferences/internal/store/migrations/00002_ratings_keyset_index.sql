-- +goose Up
-- ListRatings walks (updated_at DESC, title_id DESC); the index now matches that order in
-- both columns so a page is one index range on either engine.
DROP INDEX ratings_owner_time;
CREATE INDEX ratings_owner_time ON ratings (owner, updated_at DESC, title_id DESC);

-- +goose Down
DROP INDEX ratings_owner_time;
CREATE INDEX ratings_owner_time ON ratings (owner, updated_at DESC, title_id);
