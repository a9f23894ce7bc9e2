package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/pquerna/otp/totp"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	identityv1 "lethe.dev/gen/lethe/identity/v1"
)

func loginCmd(g *globals) *cobra.Command {
	var email, credentials string
	c := &cobra.Command{
		Use:   "login [--email ADDRESS]",
		Short: "Sign in as an operator and keep the token for later commands",
		Long: `Signs in to the gateway (POST /v1/operators:signIn) with the operator's email, password
and current TOTP code, and stores the access token in a 0600 file under your config
directory ($XDG_CONFIG_HOME/lethe/lethectl-session.json, or LETHECTL_CONFIG_DIR) with the
gateway's URL. Later commands use it until it expires; 'lethectl logout' removes it.

The password is read from the terminal without echo (or LETHECTL_PASSWORD), the code from
the terminal (or --totp-code). For development, --credentials FILE reads email, password
and TOTP secret from the dev stack's bootstrap-operator.json and computes the code.`,
		Example: `  lethectl login --email dpo@example.com
  lethectl login --credentials data/identity/bootstrap-operator.json   # make dev`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.direct {
				return usageError("login signs in to the gateway; --direct uses the service credential instead")
			}
			code, _ := cmd.Flags().GetString("totp-code")
			password := os.Getenv("LETHECTL_PASSWORD")
			if credentials != "" {
				raw, err := os.ReadFile(credentials)
				if err != nil {
					return err
				}
				var f struct{ Email, Password, TOTPSecret string }
				if err := json.Unmarshal(raw, &f); err != nil {
					return fmt.Errorf("%s: %w", credentials, err)
				}
				email, password = f.Email, f.Password
				if code == "" {
					if code, err = totp.GenerateCode(f.TOTPSecret, time.Now()); err != nil {
						return fmt.Errorf("%s: TOTP secret: %w", credentials, err)
					}
				}
			}
			in := bufio.NewReader(cmd.InOrStdin())
			var err error
			if email == "" {
				if email, err = prompt(cmd, in, "Email: "); err != nil {
					return err
				}
			}
			if password == "" {
				if password, err = promptSecret(cmd, in, "Password: "); err != nil {
					return err
				}
			}
			if code == "" {
				if code, err = prompt(cmd, in, "TOTP code: "); err != nil {
					return err
				}
			}
			conn := g.public()
			ctx, cancel := g.ctx(cmd.Context())
			defer cancel()
			res, err := identityv1.NewIdentityServiceClient(conn).SignInOperator(ctx, &identityv1.SignInOperatorRequest{Email: email, Password: password, TotpCode: code})
			if err != nil {
				return err
			}
			s := session{Gateway: conn.base, AccessToken: res.GetAccessToken(), ExpireTime: res.GetAccessTokenExpireTime().AsTime()}
			path, err := saveSession(s)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "signed in to %s until %s; token kept in %s\n", s.Gateway, s.ExpireTime.Local().Format(time.RFC3339), path)
			return nil
		},
	}
	c.Flags().StringVar(&email, "email", "", "the operator's sign-in address")
	c.Flags().String("totp-code", "", "the current 6-digit code (asked when not given)")
	c.Flags().StringVar(&credentials, "credentials", "", "development: a bootstrap-operator.json with email, password and totpSecret")
	return c
}

func logoutCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "Forget the stored operator token",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, err := sessionFile()
			if err != nil {
				return err
			}
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "signed out: removed", path)
			return nil
		},
	}
}

func prompt(cmd *cobra.Command, in *bufio.Reader, label string) (string, error) {
	fmt.Fprint(cmd.ErrOrStderr(), label)
	line, err := in.ReadString('\n')
	if err != nil && (err != io.EOF || line == "") {
		return "", fmt.Errorf("reading %s%w", strings.ToLower(label), err)
	}
	return strings.TrimSpace(line), nil
}

// promptSecret reads without echo from a terminal, else a line of input.
func promptSecret(cmd *cobra.Command, in *bufio.Reader, label string) (string, error) {
	if f, ok := cmd.InOrStdin().(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(cmd.ErrOrStderr(), label)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		return string(b), err
	}
	return prompt(cmd, in, label)
}
