package prefs

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"time"

	preferencesv1 "lethe.dev/gen/lethe/preferences/v1"
)

// SignUps tells when a member signed up (identity keeps it); ok is false for a member
// identity does not know (erased, or never existed).
type SignUps interface {
	SignedUp(ctx context.Context, memberID string) (at time.Time, ok bool, err error)
}

// Signing up accepts the privacy policy as it stands: a member who signs up after a
// version was published was shown that version (or a later one), not the older terms,
// so the version's consent gate must not stop them and its change email must not reach
// them (NotifyPolicyPage skips them). Preferences is not called at sign-up (identity
// does not depend on it), so the acceptance is recorded from identity's sign-up time
// the first time it matters — a consent check or the acceptance view — as a consent
// record of source SIGN_UP, dated at the sign-up, naming the version current then.

// signUpCacheSize bounds the in-memory cache of sign-up times (they never change).
const signUpCacheSize = 10000

type signUpCache struct {
	mu sync.Mutex
	m  map[string]signUpEntry
}

type signUpEntry struct {
	at time.Time
	ok bool
}

// signedUp is SignUps.SignedUp, cached.
func (s *Server) signedUp(ctx context.Context, memberID string) (time.Time, bool, error) {
	c := &s.signUps
	c.mu.Lock()
	e, hit := c.m[memberID]
	c.mu.Unlock()
	if hit {
		return e.at, e.ok, nil
	}
	at, ok, err := s.SignUps.SignedUp(ctx, memberID)
	if err != nil {
		return time.Time{}, false, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= signUpCacheSize {
		c.m = map[string]signUpEntry{}
	}
	c.m[memberID] = signUpEntry{at, ok}
	c.mu.Unlock()
	return at, ok, nil
}

// acceptedOrSignedUp is accepted, plus the acceptance at sign-up: when the version the
// member accepted last was published before need (the publication time of a version
// that matters to the caller), the version of policy current at the member's sign-up
// counts as accepted, and is recorded as a consent record the first time.
func (s *Server) acceptedOrSignedUp(ctx context.Context, memberID, policy string, need int64) (version string, published, at int64, err error) {
	version, published, at, err = s.accepted(ctx, s.DB, memberID, policy)
	if err != nil || published >= need || s.SignUps == nil {
		return version, published, at, err
	}
	signed, ok, err := s.signedUp(ctx, memberID)
	if err != nil || !ok {
		return version, published, at, err
	}
	vs, err := s.versions(ctx, `policy_id = $1 AND created_at <= $2`, policy, micros(signed))
	if err != nil || len(vs) == 0 {
		return version, published, at, err
	}
	cur := vs[len(vs)-1] // the version current when they signed up
	if cur.created <= published {
		return version, published, at, nil // they accepted it, or a later one, already
	}
	err = s.DB.InTx(ctx, func(tx *sql.Tx) error {
		if err := s.refuseErased(ctx, tx, memberID); err != nil {
			return err
		}
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM consent_records WHERE member_id = $1 AND setting = $2 AND value = $3 AND policy_version = $4`,
			memberID, policySetting(policy), acceptedValue, cur.version).Scan(&one)
		if err == nil {
			return nil // recorded by a concurrent call
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		return s.consent(ctx, tx, memberID, policySetting(policy), acceptedValue, cur.version, preferencesv1.ConsentSource_CONSENT_SOURCE_SIGN_UP, signed)
	})
	if errors.Is(err, ErrMemberNotFound) {
		return version, published, at, nil // erased: nothing is recorded about them
	}
	if err != nil {
		return "", 0, 0, err
	}
	return cur.version, cur.created, micros(signed), nil
}
