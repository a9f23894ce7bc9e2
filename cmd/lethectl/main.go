// Command lethectl administers a Lethe deployment. For now it has one command:
//
//	lethectl operators create -email privacy@example.com [-password …] [-identity host:port]
//
// creates an operator (privacy staff: a separate principal from members) with a strong
// password (generated when none is given) and a TOTP second factor, and prints the
// credentials once.
//
//	lethectl operators code -secret BASE32
//
// prints the current TOTP code for a secret (for development, where no authenticator
// app is at hand).
//
//	lethectl agents create|list|delete …
//
// manages the Data Rights Protocol's authorized agents in fulfillment (agents.go). It talks to identity over gRPC with the deployment's transport
// security (LETHE_SERVICE_TOKEN, LETHE_TLS_*; see platform/transport).
package main

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/pquerna/otp/totp"

	identityv1 "lethe.dev/gen/lethe/identity/v1"
	"lethe.dev/platform/config"
	"lethe.dev/platform/transport"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "lethectl:", err)
		os.Exit(2)
	}
}

const usage = "usage: lethectl operators create -email ADDRESS [-password PASSWORD] [-identity HOST:PORT]\n       lethectl operators code -secret BASE32"

func run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) >= 1 && args[0] == "agents" {
		return runAgents(ctx, args[1:], out)
	}
	if len(args) >= 2 && args[0] == "operators" && args[1] == "code" {
		fs := flag.NewFlagSet("operators code", flag.ContinueOnError)
		secret := fs.String("secret", "", "the operator's base32 TOTP secret")
		if err := fs.Parse(args[2:]); err != nil {
			return err
		}
		code, err := totp.GenerateCode(*secret, time.Now())
		if err != nil {
			return err
		}
		fmt.Fprintln(out, code)
		return nil
	}
	if len(args) < 2 || args[0] != "operators" || args[1] != "create" {
		return errors.New(usage)
	}
	fs := flag.NewFlagSet("operators create", flag.ContinueOnError)
	email := fs.String("email", "", "the operator's sign-in address")
	password := fs.String("password", "", "at least 16 characters; generated when empty")
	addr := fs.String("identity", config.Env("IDENTITY_ADDRESS", "127.0.0.1:7101"), "identity's gRPC address (IDENTITY_ADDRESS)")
	if err := fs.Parse(args[2:]); err != nil {
		return err
	}
	if *email == "" {
		return errors.New("-email is required\n" + usage)
	}
	if *password == "" {
		*password = GeneratePassword()
	}
	conn, err := transport.FromEnv().Dial(*addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := identityv1.NewIdentityServiceClient(conn).CreateOperator(ctx, &identityv1.CreateOperatorRequest{Email: *email, Password: *password})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "operator:    %s\nemail:       %s\npassword:    %s\ntotp secret: %s\ntotp uri:    %s\n",
		res.GetOperator().GetName(), res.GetOperator().GetEmail(), *password, res.GetTotpSecret(), res.GetTotpUri())
	fmt.Fprintln(out, "\nShown once. Add the TOTP secret to an authenticator app, then sign in with POST /v1/operators:signIn.")
	return nil
}

// GeneratePassword returns a random 32-character password (160 bits).
func GeneratePassword() string {
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}
