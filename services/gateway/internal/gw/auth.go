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
// letting bad tokens hammer identity.
type Verifier struct {
	Identity     identityv1.IdentityServiceClient
	RefetchEvery time.Duration

	mu        sync.Mutex
	verifier  jwt.Verifier
	fetchedAt time.Time
	validator *jwt.Validator
}

// ErrBadToken is returned for any token that does not verify.
var ErrBadToken = errors.New("gateway: access token is not valid")

func (v *Verifier) refresh(ctx context.Context, force bool) (jwt.Verifier, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.verifier != nil && (!force || time.Since(v.fetchedAt) < v.RefetchEvery) {
		return v.verifier, nil
	}
	set, err := v.Identity.GetJwks(ctx, &identityv1.GetJwksRequest{})
	if err != nil {
		if v.verifier != nil {
			return v.verifier, nil
		}
		return nil, err
	}
	raw, _ := json.Marshal(map[string]any{"keys": set.GetKeys()})
	h, err := jwt.JWKSetToPublicKeysetHandle(raw)
	if err != nil {
		return nil, err
	}
	jv, err := jwt.NewVerifier(h)
	if err != nil {
		return nil, err
	}
	v.verifier, v.fetchedAt = jv, time.Now()
	if v.validator == nil {
		iss := "lethe-identity"
		if v.validator, err = jwt.NewValidator(&jwt.ValidatorOpts{ExpectedIssuer: &iss}); err != nil {
			return nil, err
		}
	}
	return jv, nil
}

// Verify checks a bearer token.
func (v *Verifier) Verify(ctx context.Context, token string) (*Principal, error) {
	if token == "" || len(token) > 4096 || strings.Count(token, ".") != 2 {
		return nil, ErrBadToken
	}
	jv, err := v.refresh(ctx, false)
	if err != nil {
		return nil, err
	}
	vt, err := jv.VerifyAndDecode(token, v.validator)
	if err != nil && !jwt.IsExpirationErr(err) {
		// Perhaps signed by a key rotated in since the last fetch.
		if jv2, ferr := v.refresh(ctx, true); ferr == nil && jv2 != jv {
			vt, err = jv2.VerifyAndDecode(token, v.validator)
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
