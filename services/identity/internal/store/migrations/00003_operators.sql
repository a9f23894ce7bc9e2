-- +goose Up
-- Operators are privacy staff, not members: their own accounts with a password and a
-- TOTP second factor. The TOTP secret is encrypted under the operator's own data key
-- (wrapped_key, bound to "member:operator/{id}" by the KEK).
CREATE TABLE operators (
    id             TEXT PRIMARY KEY,
    email          TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    wrapped_key    BYTEA NOT NULL,
    totp_secret    BYTEA NOT NULL,
    last_totp_step BIGINT NOT NULL,
    failures       INTEGER NOT NULL,
    locked_until   BIGINT NOT NULL,
    created_at     BIGINT NOT NULL
);
CREATE UNIQUE INDEX operators_email ON operators (email);

-- +goose Down
DROP TABLE operators;
