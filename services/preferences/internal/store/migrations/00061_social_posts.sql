-- +goose Up
-- What each connected network was given, posted by the connection's share flags: the
-- record disconnecting deletes (with the connection) and erasure deletes.
CREATE TABLE social_posts (
    id            TEXT PRIMARY KEY,
    member_id     TEXT NOT NULL,
    connection_id TEXT NOT NULL,
    network       TEXT NOT NULL,
    kind          TEXT NOT NULL,
    title_id      TEXT NOT NULL,
    stars         INTEGER NOT NULL,
    posted_at     BIGINT NOT NULL
);
CREATE INDEX social_posts_member ON social_posts (member_id, posted_at);
CREATE INDEX social_posts_connection ON social_posts (connection_id);

-- +goose Down
DROP TABLE social_posts;
