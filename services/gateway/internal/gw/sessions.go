package gw

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	identityv1 "lethe.dev/gen/lethe/identity/v1"
	"lethe.dev/platform/authz"
)

// errSessionUnknown means identity says the token's session is no longer live.
var errSessionUnknown = errors.New("gateway: the session was revoked")

// Sessions checks that a token's session (sid) is still live in identity, so sign-out,
// device revocation, disabling and erasure take effect within TTL instead of at the
// access token's expiry. Answers are cached per session for TTL.
type Sessions struct {
	Identity identityv1.IdentityServiceClient
	TTL      time.Duration

	mu    sync.Mutex
	cache map[string]sessionAnswer
	swept time.Time
}

type sessionAnswer struct {
	live bool
	at   time.Time
}

// Check reports nil when p's session is live, errSessionUnknown when it is not, and
// another error when identity could not be asked. Member sessions only: operators are
// becoming their own principal with their own sessions (issue 10, "operators are not
// members"), checked where those sessions live.
func (s *Sessions) Check(ctx context.Context, p *Principal) error {
	if p.Role != authz.RoleMember {
		return nil
	}
	if p.Session == "" {
		return errSessionUnknown
	}
	key := p.Member + "/" + p.Session
	now := time.Now()
	s.mu.Lock()
	if s.cache == nil {
		s.cache = map[string]sessionAnswer{}
	}
	if now.Sub(s.swept) > time.Minute {
		for k, a := range s.cache {
			if now.Sub(a.at) > s.TTL {
				delete(s.cache, k)
			}
		}
		s.swept = now
	}
	a, ok := s.cache[key]
	s.mu.Unlock()
	if !ok || now.Sub(a.at) > s.TTL {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		res, err := s.Identity.ListSessions(ctx, &identityv1.ListSessionsRequest{Parent: "members/" + p.Member})
		switch status.Code(err) {
		case codes.OK:
			a = sessionAnswer{live: slices.ContainsFunc(res.GetSessions(), func(x *identityv1.Session) bool {
				return x.GetName() == "members/"+p.Member+"/sessions/"+p.Session
			}), at: now}
		case codes.NotFound:
			a = sessionAnswer{live: false, at: now} // erased: no member, no session
		default:
			return err
		}
		s.mu.Lock()
		s.cache[key] = a
		s.mu.Unlock()
	}
	if !a.live {
		return errSessionUnknown
	}
	return nil
}
