-- +goose Up
-- Sign-in failures are counted per (account, client address) with exponential backoff,
-- not per account: a stranger's wrong guesses no longer lock the owner out.
-- key = SHA-256 over the email blind index and the client address; account_key is
-- the account's own key, so erasure removes every row of the account. window_start now
-- holds the time of the last failure.
DELETE FROM sign_in_failures;
ALTER TABLE sign_in_failures ADD COLUMN account_key BYTEA;
CREATE INDEX sign_in_failures_account ON sign_in_failures (account_key);

-- +goose Down
DROP INDEX sign_in_failures_account;
ALTER TABLE sign_in_failures DROP COLUMN account_key;
