package gw

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/tink-crypto/tink-go/v2/jwt"

	identityv1 "lethe.dev/gen/lethe/identity/v1"
	"lethe.dev/platform/authz"
)

// Principal is the verified caller: a member or an operator (operators are not
// members; their tokens carry role "operator" and the operator id as subject).
type Principal struct {
	Member   string // for role member
	Operator string // for role operator
	Session  string
	Role     string // authz.RoleMember or authz.RoleOperator
	IssuedAt time.Time
	// AuthTime is when the member last entered their password (the auth_time claim);
	// refreshed tokens keep the original sign-in's time. Zero when the token has none.
	AuthTime time.Time
}

// Subject is the member or operator id.
func (p *Principal) Subject() string {
	if p.Role == authz.RoleOperator {
		return p.Operator
	}
	return p.Member
}

// authz is the caller as platform/authz sees it (anonymous when nil).
func (p *Principal) authz() authz.Principal {
	if p == nil {
		return authz.Principal{Role: authz.RoleAnonymous}
	}
	return authz.Principal{Role: p.Role, ID: p.Subject()}
}

// Verifier checks access tokens locally against identity's JWKS. Unknown keys trigger
// at most one JWKS refetch per RefetchEvery, so a key rotation is picked up without
// letting bad tokens hammer identity. A fetch runs under its own deadline (FetchTimeout)
// and without holding the lock, so a slow identity neither stalls verification with the
// cached keys nor inherits a caller's cancellation.
type Verifier struct {
	Identity     identityv1.IdentityServiceClient
	RefetchEvery time.Duration
	FetchTimeout time.Duration // 0 means 5 s

	mu        sync.Mutex
	verifier  jwt.Verifier
	fetchedAt time.Time
	attempted time.Time     // last fetch attempt, successful or not
	inflight  chan struct{} // closed when the running fetch ends; nil when none runs
	validator *jwt.Validator
}

// ErrBadToken is returned for any token that does not verify.
var ErrBadToken = errors.New("gateway: access token is not valid")

func (v *Verifier) refresh(ctx context.Context, force bool) (jwt.Verifier, error) {
	v.mu.Lock()
	if v.verifier != nil && (!force || time.Since(v.attempted) < v.RefetchEvery) {
		jv := v.verifier
		v.mu.Unlock()
		return jv, nil
	}
	wait := v.inflight
	if wait == nil {
		wait = make(chan struct{})
		v.inflight = wait
		v.attempted = time.Now()
		go v.fetch(wait)
	}
	v.mu.Unlock()
	select {
	case <-wait:
	case <-ctx.Done():
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.verifier == nil {
		return nil, errors.New("gateway: identity's JWKS is not available")
	}
	return v.verifier, nil
}

// fetch loads the JWKS under its own deadline and installs it; done is closed after.
func (v *Verifier) fetch(done chan struct{}) {
	timeout := v.FetchTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	jv, err := v.load(ctx)
	v.mu.Lock()
	if err == nil {
		v.verifier, v.fetchedAt = jv, time.Now()
	}
	v.inflight = nil
	v.mu.Unlock()
	close(done)
}

func (v *Verifier) load(ctx context.Context) (jwt.Verifier, error) {
	set, err := v.Identity.GetJwks(ctx, &identityv1.GetJwksRequest{})
	if err != nil {
		return nil, err
	}
	raw, _ := json.Marshal(map[string]any{"keys": set.GetKeys()})
	h, err := jwt.JWKSetToPublicKeysetHandle(raw)
	if err != nil {
		return nil, err
	}
	return jwt.NewVerifier(h)
}

var issuer = "lethe-identity"

var validator = func() *jwt.Validator {
	v, err := jwt.NewValidator(&jwt.ValidatorOpts{ExpectedIssuer: &issuer})
	if err != nil {
		panic(err)
	}
	return v
}()

// Verify checks a bearer token.
func (v *Verifier) Verify(ctx context.Context, token string) (*Principal, error) {
	if token == "" || len(token) > 4096 || strings.Count(token, ".") != 2 {
		return nil, ErrBadToken
	}
	jv, err := v.refresh(ctx, false)
	if err != nil {
		return nil, err
	}
	vt, err := jv.VerifyAndDecode(token, validator)
	if err != nil && !jwt.IsExpirationErr(err) {
		// Perhaps signed by a key rotated in since the last fetch.
		if jv2, ferr := v.refresh(ctx, true); ferr == nil && jv2 != jv {
			vt, err = jv2.VerifyAndDecode(token, validator)
		}
	}
	if err != nil {
		return nil, ErrBadToken
	}
	p := &Principal{}
	sub, _ := vt.Subject()
	p.Session, _ = vt.StringClaim("sid")
	p.Role, _ = vt.StringClaim("role")
	p.IssuedAt, _ = vt.IssuedAt()
	if at, err := vt.NumberClaim("auth_time"); err == nil && at > 0 {
		p.AuthTime = time.Unix(int64(at), 0)
	}
	switch p.Role {
	case authz.RoleMember:
		p.Member = sub
	case authz.RoleOperator:
		p.Operator = sub
	default:
		return nil, ErrBadToken
	}
	if sub == "" {
		return nil, ErrBadToken
	}
	return p, nil
}
