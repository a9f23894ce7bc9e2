-- +goose Up
ALTER TABLE widgets ADD COLUMN archived BOOLEAN NOT NULL DEFAULT FALSE;

-- +goose Down
ALTER TABLE widgets DROP COLUMN archived;
