-- +goose Up
-- Data Rights Protocol: authorized agents, their bearer tokens (hashes only), the signed
-- bodies already accepted (replay protection, kept until they expire), DRP requests and
-- the log of statuses each request went through (delivered to the agent's callback).
CREATE TABLE drp_agents (
    id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    verify_key BYTEA NOT NULL,
    contact TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE drp_tokens (
    token_hash BYTEA PRIMARY KEY,
    agent_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX drp_tokens_agent ON drp_tokens (agent_id);
CREATE TABLE drp_seen_bodies (
    body_hash BYTEA PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX drp_seen_bodies_expiry ON drp_seen_bodies (expires_at);
CREATE TABLE drp_requests (
    id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    agent_request_id TEXT NOT NULL,
    exercise TEXT NOT NULL,
    regime TEXT NOT NULL,
    status_callback TEXT NOT NULL,
    privacy_request_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    details TEXT NOT NULL,
    revoked BOOLEAN NOT NULL,
    received_at BIGINT NOT NULL,
    expected_by BIGINT
);
CREATE INDEX drp_requests_privacy_request ON drp_requests (privacy_request_id);
CREATE TABLE drp_status_log (
    request_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (request_id, seq)
);

-- +goose Down
DROP TABLE drp_status_log;
DROP TABLE drp_requests;
DROP TABLE drp_seen_bodies;
DROP TABLE drp_tokens;
DROP TABLE drp_agents;
