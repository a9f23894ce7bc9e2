package main

import (
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"strings"
	"time"

	"github.com/pquerna/otp/totp"
	"github.com/spf13/cobra"

	identityv1 "lethe.dev/gen/lethe/identity/v1"
)

func operatorsCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "operators",
		Short: "Create operators (privacy staff) and print TOTP codes",
		Long: `Operators are privacy staff: a principal separate from members, with a password and a
TOTP second factor. Creating one is internal to the deployment (identity's CreateOperator
answers only the service credential), so 'operators create' always calls identity over
gRPC with LETHE_SERVICE_TOKEN.`,
	}
	c.AddCommand(operatorsCreateCmd(g), operatorsCodeCmd())
	return c
}

func operatorsCreateCmd(g *globals) *cobra.Command {
	var email, password string
	c := &cobra.Command{
		Use:   "create --email ADDRESS [--password PASSWORD]",
		Short: "Create an operator and print its credentials once",
		Long: `Creates an operator with a strong password (generated when none is given) and a TOTP
second factor, and prints the password and TOTP secret once. Calls identity over gRPC with
the service credential (LETHE_SERVICE_TOKEN; --identity or IDENTITY_ADDRESS).`,
		Example: "  LETHE_SERVICE_TOKEN=… lethectl operators create --email dpo@example.com",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if email == "" {
				return usageError("--email is required")
			}
			if password == "" {
				password = GeneratePassword()
			}
			g.direct = true // internal RPC: never through the gateway
			conn, err := g.conn(g.identity)
			if err != nil {
				return err
			}
			ctx, cancel := g.ctx(cmd.Context())
			defer cancel()
			res, err := identityv1.NewIdentityServiceClient(conn).CreateOperator(ctx, &identityv1.CreateOperatorRequest{Email: email, Password: password})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if g.output == "json" {
				return printJSON(out, res)
			}
			fmt.Fprintf(out, "operator:    %s\nemail:       %s\npassword:    %s\ntotp secret: %s\ntotp uri:    %s\n",
				res.GetOperator().GetName(), res.GetOperator().GetEmail(), password, res.GetTotpSecret(), res.GetTotpUri())
			fmt.Fprintln(out, "\nShown once. Add the TOTP secret to an authenticator app, then sign in with `lethectl login`.")
			return nil
		},
	}
	c.Flags().StringVar(&email, "email", "", "the operator's sign-in address")
	c.Flags().StringVar(&password, "password", "", "at least 16 characters; generated when empty")
	return c
}

func operatorsCodeCmd() *cobra.Command {
	var secret string
	c := &cobra.Command{
		Use:     "code --secret BASE32",
		Short:   "Print the current TOTP code for a secret (development)",
		Long:    "Prints the current 6-digit TOTP code for a base32 secret, for development where no authenticator app is at hand.",
		Example: "  lethectl operators code --secret \"$(jq -r .totpSecret data/identity/bootstrap-operator.json)\"",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			code, err := totp.GenerateCode(secret, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), code)
			return nil
		},
	}
	c.Flags().StringVar(&secret, "secret", "", "the operator's base32 TOTP secret")
	_ = c.MarkFlagRequired("secret")
	return c
}

// GeneratePassword returns a random 32-character password (160 bits).
func GeneratePassword() string {
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}
