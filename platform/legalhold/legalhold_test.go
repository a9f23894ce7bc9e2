package legalhold_test

import (
	"context"
	"errors"
	"testing"

	"lethe.dev/platform/errs"
	"lethe.dev/platform/legalhold"
)

type checker struct {
	held bool
	err  error
}

func (c checker) Held(context.Context, string) (bool, error) { return c.held, c.err }

// TestRefuseFailsClosed: a held member's deletion is refused (LEGAL_HOLD), and so is one
// whose holds cannot be read (LEGAL_HOLDS_UNAVAILABLE, retryable); only a member known
// not to be held, or a service run without fulfillment, goes on.
func TestRefuseFailsClosed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		c      legalhold.Checker
		code   errs.Code
		reason string
	}{
		{"held", checker{held: true}, errs.FailedPrecondition, legalhold.Reason},
		{"unknown", checker{err: errors.New("connection refused")}, errs.Unavailable, legalhold.UnavailableReason},
		{"not held", checker{}, 0, ""},
		{"no fulfillment", nil, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := legalhold.Refuse(context.Background(), tc.c, "member000001", nil)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var e *errs.Error
			if !errors.As(err, &e) || e.Code != tc.code || e.Reason != tc.reason {
				t.Fatalf("err = %#v, want %d %s", err, tc.code, tc.reason)
			}
		})
	}
}
