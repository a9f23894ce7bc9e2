package prefs

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"

	"lethe.dev/platform/errs"
)

// ErrMemberNotFound is the answer for a member this service must not hold data about:
// an erased one. It is the answer identity and the gateway give an unknown member.
var ErrMemberNotFound = errs.NotFoundf("MEMBER_NOT_FOUND", "member")

// erasedHash is how an erased member is remembered: SHA-256 of the opaque id (random
// 128 bits), so the table names no member, yet a late write for the id is recognised.
func erasedHash(memberID string) []byte {
	h := sha256.Sum256([]byte("lethe erased member\x00" + memberID))
	return h[:]
}

// refuseErased fails with ErrMemberNotFound when memberID was erased, so an old
// unsubscribe link or a call in flight during the erasure cannot bring rows back.
func (s *Server) refuseErased(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, memberID string) error {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM erased_members WHERE member_hash = $1`, erasedHash(memberID)).Scan(&one)
	switch {
	case err == nil:
		return ErrMemberNotFound
	case errors.Is(err, sql.ErrNoRows):
		return nil
	default:
		return err
	}
}
