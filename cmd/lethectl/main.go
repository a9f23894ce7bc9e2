// Command lethectl is the operator's command line for a Lethe deployment: the request
// queue (list, show with its timeline, extend, legal holds), the partner registry, the
// yearly statistics, operators and authorized agents — and, for anyone without an
// account, offline verification of an erasure receipt.
//
// It talks to the gateway over HTTP with an operator's access token (`lethectl login`
// signs in with password and TOTP code and keeps the token in a 0600 file; --token or
// LETHECTL_TOKEN give one directly), or with --direct to the services over gRPC with
// the deployment's service credential (LETHE_SERVICE_TOKEN, LETHE_TLS_*; see
// platform/transport). Both paths use the same generated clients: over the gateway each
// call becomes the JSON/REST call its google.api.http option declares (gatewayconn.go).
// Actions on a member's request (extend, hold, release) need an operator, so that the
// audit log names who took them. See README.md.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "lethectl:", err)
		os.Exit(exitCode(err))
	}
}

// exitCode is 1 for a receipt that does not verify (a verdict, not a failure to run),
// 2 for everything else.
func exitCode(err error) int {
	if _, ok := err.(*receiptInvalid); ok {
		return 1
	}
	return 2
}

// run executes one command line, writing results (and help) to out.
func run(ctx context.Context, args []string, out io.Writer) error {
	g := &globals{}
	root := newRoot(g)
	root.SetArgs(legacyFlags(root, args))
	root.SetOut(out)
	root.SetErr(os.Stderr)
	defer g.close()
	err := root.ExecuteContext(ctx)
	err = describe(err, g.direct)
	if status.Code(err) == codes.Unauthenticated && !g.expired.IsZero() {
		err = fmt.Errorf("%w (the session of `lethectl login` expired at %s)", err, g.expired.Local().Format(time.RFC3339))
	}
	return err
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "lethectl",
		Short: "Operate a Lethe deployment: privacy requests, partners, statistics, receipts",
		Long: `lethectl is the command line of Lethe's privacy team.

Credentials: by default it calls the gateway (--gateway, LETHECTL_GATEWAY; default
` + defaultGateway + `) with an operator access token: run 'lethectl login' once (password +
TOTP code; the token is kept in a 0600 file under your config directory), or pass
--token / LETHECTL_TOKEN. With --direct (or an address flag such as --fulfillment) it calls
the services over gRPC with the deployment's service credential (LETHE_SERVICE_TOKEN).
Actions on a member's request (extend, hold, release) need an operator, so the audit log
names who took them and why.

'lethectl receipt verify' needs no account: members and regulators check an erasure
receipt against the published keys.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return g.prepare(cmd)
		},
	}
	g.register(root)
	root.AddGroup(&cobra.Group{ID: "ops", Title: "Privacy operations:"}, &cobra.Group{ID: "admin", Title: "Administration:"}, &cobra.Group{ID: "public", Title: "For anyone (no account needed):"})
	for _, c := range []*cobra.Command{requestsCmd(g), partnersCmd(g), statsCmd(g)} {
		c.GroupID = "ops"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{loginCmd(g), logoutCmd(), operatorsCmd(g), agentsCmd(g)} {
		c.GroupID = "admin"
		root.AddCommand(c)
	}
	r := receiptCmd(g)
	r.GroupID = "public"
	root.AddCommand(r)
	root.SetHelpCommandGroupID("admin")
	root.SetCompletionCommandGroupID("admin")
	return root
}

var singleDash = regexp.MustCompile(`^-([a-z][a-z0-9-]+)(=.*)?$`)

// legacyFlags accepts the single-dash long flags of lethectl's first version
// (`operators create -email …`, `agents create -id …`): an argument like -name that
// names a long flag of any command is read as --name.
func legacyFlags(root *cobra.Command, args []string) []string {
	long := map[string]bool{}
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		for _, fs := range []*pflag.FlagSet{c.Flags(), c.PersistentFlags()} {
			fs.VisitAll(func(f *pflag.Flag) { long[f.Name] = true })
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		if m := singleDash.FindStringSubmatch(a); m != nil && long[m[1]] {
			a = "-" + a
		}
		out = append(out, a)
	}
	return out
}

// usageError marks a mistake in the command line.
func usageError(format string, a ...any) error {
	return fmt.Errorf(format, a...)
}

// trimName accepts a resource name with or without a leading "/v1/".
func trimName(s string) string {
	return strings.TrimPrefix(strings.TrimPrefix(s, "/v1/"), "/")
}

// describe renders a gRPC status (from either path) as one line: the code, the message,
// the AIP-193 reason and any field violations.
func describe(err error, direct bool) error {
	st, ok := status.FromError(err)
	if !ok || err == nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", st.Code(), st.Message())
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			fmt.Fprintf(&b, " (%s)", d.GetReason())
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				fmt.Fprintf(&b, "; %s %s", v.GetField(), v.GetDescription())
			}
		}
	}
	switch {
	case st.Code() == codes.Unauthenticated && direct:
		b.WriteString(" — set LETHE_SERVICE_TOKEN to the deployment's service credential")
	case st.Code() == codes.Unauthenticated:
		b.WriteString(" — sign in with `lethectl login`, or pass --token")
	}
	return &statusError{msg: b.String(), st: st}
}

// statusError keeps the status for errors.As / status.FromError with a readable message.
type statusError struct {
	msg string
	st  *status.Status
}

func (e *statusError) Error() string              { return e.msg }
func (e *statusError) GRPCStatus() *status.Status { return e.st }
