-- +goose Up
CREATE TABLE widgets (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    payload BYTEA,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX widgets_owner ON widgets (owner);

-- +goose Down
DROP TABLE widgets;
