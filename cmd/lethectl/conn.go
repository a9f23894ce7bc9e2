package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
	"lethe.dev/platform/config"
	"lethe.dev/platform/transport"
)

// globals are the flags every command shares: where to send calls, with which
// credential, and how to print the answer.
type globals struct {
	gateway  string // gateway base URL (LETHECTL_GATEWAY)
	token    string // operator access token (--token, LETHECTL_TOKEN, or the stored login)
	direct   bool   // talk to the services over gRPC with the service credential
	output   string // "table" or "json"
	timeout  time.Duration
	identity string // services' gRPC addresses, for --direct
	fulfill  string
	sharing  string

	expired time.Time // when the stored session expired, if it has

	conns []*grpc.ClientConn
}

const defaultGateway = "http://127.0.0.1:8080"

func (g *globals) register(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVar(&g.gateway, "gateway", config.Env("LETHECTL_GATEWAY", ""), "gateway base URL (LETHECTL_GATEWAY; default: the one lethectl login used, else "+defaultGateway+")")
	f.StringVar(&g.token, "token", os.Getenv("LETHECTL_TOKEN"), "operator access token for the gateway (LETHECTL_TOKEN; default: the one lethectl login stored)")
	f.BoolVar(&g.direct, "direct", config.Env("LETHECTL_DIRECT", "") == "1", "call the services over gRPC with the service credential LETHE_SERVICE_TOKEN instead of the gateway (LETHECTL_DIRECT=1); implied by an address flag")
	f.StringVarP(&g.output, "output", "o", "table", "output format: table or json")
	f.DurationVar(&g.timeout, "timeout", 30*time.Second, "deadline of each command")
	f.StringVar(&g.identity, "identity", config.Env("IDENTITY_ADDRESS", "127.0.0.1:7101"), "identity's gRPC address, with --direct (IDENTITY_ADDRESS)")
	f.StringVar(&g.fulfill, "fulfillment", config.Env("FULFILLMENT_ADDRESS", "127.0.0.1:7104"), "fulfillment's gRPC address, with --direct (FULFILLMENT_ADDRESS)")
	f.StringVar(&g.sharing, "sharing", config.Env("SHARING_ADDRESS", "127.0.0.1:7103"), "sharing's gRPC address, with --direct (SHARING_ADDRESS)")
}

// prepare settles the transport before a command runs: --direct, or an address flag
// given on the command line, means gRPC with the service credential; otherwise the
// gateway with an operator token, from --token, LETHECTL_TOKEN or the stored login.
func (g *globals) prepare(cmd *cobra.Command) error {
	if g.output != "table" && g.output != "json" {
		return fmt.Errorf("-o must be table or json, not %q", g.output)
	}
	for _, name := range []string{"identity", "fulfillment", "sharing"} {
		if cmd.Flags().Changed(name) {
			g.direct = true
		}
	}
	if g.direct {
		return nil
	}
	if s, err := loadSession(); err == nil {
		if g.gateway == "" {
			g.gateway = s.Gateway
		}
		if g.token == "" && strings.TrimRight(s.Gateway, "/") == strings.TrimRight(g.gateway, "/") {
			if time.Now().Before(s.ExpireTime) {
				g.token = s.AccessToken
			} else {
				g.expired = s.ExpireTime // no token: the gateway answers Unauthenticated, and the error says why
			}
		}
	}
	if g.gateway == "" {
		g.gateway = defaultGateway
	}
	return nil
}

// conn returns the connection a service's client uses: the gateway, or with --direct
// the service's gRPC address (addr picks it).
func (g *globals) conn(addr string) (grpc.ClientConnInterface, error) {
	if !g.direct {
		return &gatewayConn{base: g.gateway, token: g.token}, nil
	}
	c, err := transport.FromEnv().Dial(addr)
	if err != nil {
		return nil, err
	}
	g.conns = append(g.conns, c)
	return c, nil
}

// public returns a gateway connection without credentials (public calls: receipt keys).
func (g *globals) public() *gatewayConn {
	base := g.gateway
	if base == "" {
		base = defaultGateway
	}
	return &gatewayConn{base: base}
}

func (g *globals) close() {
	for _, c := range g.conns {
		_ = c.Close()
	}
	g.conns = nil
}

// requireOperator refuses actions on a member's request over the service credential:
// the audit log must name the operator who took them and why.
func (g *globals) requireOperator(what string) error {
	if g.direct {
		return fmt.Errorf("%s is an operator action recorded in the audit log under the operator's name: sign in (lethectl login) and run it through the gateway, not --direct", what)
	}
	return nil
}

func (g *globals) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, g.timeout)
}

// session is what `lethectl login` stores: one operator session for one gateway.
type session struct {
	Gateway     string    `json:"gateway"`
	Operator    string    `json:"operator,omitempty"`
	AccessToken string    `json:"accessToken"`
	ExpireTime  time.Time `json:"expireTime"`
}

// sessionFile is where the login is kept: LETHECTL_CONFIG_DIR, else the user's config
// directory (XDG_CONFIG_HOME or ~/.config on Linux) under lethe/.
func sessionFile() (string, error) {
	dir := os.Getenv("LETHECTL_CONFIG_DIR")
	if dir == "" {
		base, err := os.UserConfigDir()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(base, "lethe")
	}
	return filepath.Join(dir, "lethectl-session.json"), nil
}

func loadSession() (session, error) {
	var s session
	path, err := sessionFile()
	if err != nil {
		return s, err
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return s, fmt.Errorf("%s: %w", path, err)
	}
	if s.AccessToken == "" {
		return s, errors.New("no token stored")
	}
	return s, nil
}

// saveSession writes the session to a 0600 file in a 0700 directory.
func saveSession(s session) (string, error) {
	path, err := sessionFile()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	raw, _ := json.MarshalIndent(s, "", "  ")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp, 0o600); err != nil { // an older file kept its mode
		return "", err
	}
	return path, os.Rename(tmp, path)
}

// dial opens the connection to one service and the command's deadline.
func (g *globals) dial(cmd *cobra.Command, addr string) (grpc.ClientConnInterface, context.Context, context.CancelFunc, error) {
	conn, err := g.conn(addr)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := g.ctx(cmd.Context())
	return conn, ctx, cancel, nil
}

func (g *globals) fulfillment(cmd *cobra.Command) (fulfillmentv1.FulfillmentServiceClient, context.Context, context.CancelFunc, error) {
	conn, ctx, cancel, err := g.dial(cmd, g.fulfill)
	if err != nil {
		return nil, nil, nil, err
	}
	return fulfillmentv1.NewFulfillmentServiceClient(conn), ctx, cancel, nil
}

func (g *globals) dataRights(cmd *cobra.Command) (fulfillmentv1.DataRightsServiceClient, context.Context, context.CancelFunc, error) {
	conn, ctx, cancel, err := g.dial(cmd, g.fulfill)
	if err != nil {
		return nil, nil, nil, err
	}
	return fulfillmentv1.NewDataRightsServiceClient(conn), ctx, cancel, nil
}

func (g *globals) partners(cmd *cobra.Command) (sharingv1.SharingServiceClient, context.Context, context.CancelFunc, error) {
	conn, ctx, cancel, err := g.dial(cmd, g.sharing)
	if err != nil {
		return nil, nil, nil, err
	}
	return sharingv1.NewSharingServiceClient(conn), ctx, cancel, nil
}
