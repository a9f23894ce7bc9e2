-- +goose Up
-- Global Privacy Control signals of signed-out visitors, by SHA-256 of the gateway's
-- device cookie: applied to the member who signs in on that device. No member id here.
CREATE TABLE device_gpc (
    device_hash BYTEA PRIMARY KEY,
    signal_at   BIGINT NOT NULL
);

-- +goose Down
DROP TABLE device_gpc;
