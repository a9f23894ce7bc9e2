package identity_test

import (
	"context"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
	"github.com/tink-crypto/tink-go/v2/jwt"
	"google.golang.org/grpc/metadata"

	identityv1 "lethe.dev/gen/lethe/identity/v1"
	"lethe.dev/platform/authz"
	"lethe.dev/platform/grpcserver"
)

// TestOperatorsAreASeparatePrincipal: operators have their own accounts (password +
// TOTP), their tokens say role "operator" with the operator id as subject, a code works
// once, wrong attempts lock the account, and a member's credentials do not open it.
func TestOperatorsAreASeparatePrincipal(t *testing.T) {
	engines(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		if _, err := h.client.CreateOperator(ctx, &identityv1.CreateOperatorRequest{Email: "ops@example.com", Password: "short"}); grpcserver.ReasonOf(err) != "INVALID_ARGUMENT" {
			t.Fatalf("weak password accepted: %v", err)
		}
		res, err := h.client.CreateOperator(ctx, &identityv1.CreateOperatorRequest{Email: "Ops@Example.com", Password: "a long operator password"})
		if err != nil {
			t.Fatal(err)
		}
		if res.GetTotpSecret() == "" || res.GetOperator().GetEmail() != "ops@example.com" {
			t.Fatalf("create: %v", res)
		}
		if _, err := h.client.CreateOperator(ctx, &identityv1.CreateOperatorRequest{Email: "ops@example.com", Password: "a long operator password"}); grpcserver.ReasonOf(err) != "OPERATOR_EXISTS" {
			t.Fatalf("duplicate: %v", err)
		}
		// CreateOperator is SERVICE: an operator or member forwarded by the gateway is refused.
		asOp := metadata.NewOutgoingContext(ctx, metadata.Pairs(authz.HeaderRole, authz.RoleOperator, authz.HeaderOperator, "oooooooooooo"))
		if _, err := h.client.CreateOperator(asOp, &identityv1.CreateOperatorRequest{Email: "x@example.com", Password: "a long operator password"}); grpcserver.ReasonOf(err) != "INTERNAL_ONLY" {
			t.Fatalf("operator created an operator: %v", err)
		}
		signIn := func(password, code string) (*identityv1.SignInResponse, error) {
			return h.client.SignInOperator(ctx, &identityv1.SignInOperatorRequest{Email: "ops@example.com", Password: password, TotpCode: code})
		}
		now, _ := totp.GenerateCode(res.GetTotpSecret(), time.Now())
		if _, err := signIn("a long operator password", "000000"); grpcserver.ReasonOf(err) != "INVALID_CREDENTIALS" && now != "000000" {
			t.Fatalf("wrong code: %v", err)
		}
		tok, err := signIn("a long operator password", now)
		if err != nil {
			t.Fatal(err)
		}
		if tok.GetRefreshToken() != "" {
			t.Fatal("operators get no refresh token")
		}
		claims := verify(t, h, tok.GetAccessToken())
		if role, _ := claims.StringClaim("role"); role != "operator" {
			t.Fatalf("role %q", role)
		}
		if sub, _ := claims.Subject(); "operators/"+sub != res.GetOperator().GetName() {
			t.Fatalf("subject %q, operator %q", sub, res.GetOperator().GetName())
		}
		if _, err := signIn("a long operator password", now); grpcserver.ReasonOf(err) != "INVALID_CREDENTIALS" {
			t.Fatalf("a replayed code signed in: %v", err)
		}
		// A member with the same email and password is not an operator.
		m := ada()
		m.Email = "ops@example.com"
		create(t, h, m, "")
		mt, err := h.client.SignIn(ctx, &identityv1.SignInRequest{Email: "ops@example.com", Password: "correct horse battery"})
		if err != nil {
			t.Fatal(err)
		}
		if role, _ := verify(t, h, mt.GetAccessToken()).StringClaim("role"); role != "member" {
			t.Fatalf("member token role %q", role)
		}
		// Five wrong passwords lock the operator account, even for the right code.
		for range 5 {
			_, _ = signIn("not the password at all", "123456")
		}
		next, _ := totp.GenerateCode(res.GetTotpSecret(), time.Now().Add(30*time.Second))
		if _, err := signIn("a long operator password", next); grpcserver.ReasonOf(err) != "TOO_MANY_ATTEMPTS" {
			t.Fatalf("after five failures: %v", err)
		}
	})
}

func verify(t *testing.T, h *harness, token string) *jwt.VerifiedJWT {
	t.Helper()
	iss := "lethe-identity"
	val, _ := jwt.NewValidator(&jwt.ValidatorOpts{ExpectedIssuer: &iss})
	vt, err := jwksVerifier(t, h).VerifyAndDecode(token, val)
	if err != nil {
		t.Fatal(err)
	}
	return vt
}
