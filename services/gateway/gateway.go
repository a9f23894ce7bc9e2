// Package gateway wires the JSON/REST gateway: the one door from the web into Lethe.
// Behaviour lives in internal/gw.
package gateway

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"google.golang.org/grpc"

	"lethe.dev/platform/config"
	"lethe.dev/platform/transport"
	"lethe.dev/services/gateway/internal/gw"
)

// Config is the gateway's configuration.
type Config struct {
	ListenAddr          string
	IdentityAddress     string
	PreferencesAddress  string
	SharingAddress      string
	FulfillmentAddress  string
	FulfillmentHTTPAddr string
	CORSOrigins         string
	MaxBodyBytes        int64
	Timeout             time.Duration
	SensitivePerMinute  int
	JWKSRefetch         time.Duration
	RecentSignIn        time.Duration
	SessionCheckTTL     time.Duration
	TrustedProxies      string
	DRPRedirectHosts    string
	ReadTimeout         time.Duration
	TemporalUIURL       string
}

// RegisterFlags registers flags whose defaults come from the environment.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.ListenAddr, "listen", config.Env("GATEWAY_LISTEN", "127.0.0.1:8080"), "HTTP listen address (GATEWAY_LISTEN)")
	fs.StringVar(&c.IdentityAddress, "identity-address", config.Env("IDENTITY_ADDRESS", "127.0.0.1:7101"), "identity gRPC address: host:port (a DNS name of every replica) or a comma-separated list (IDENTITY_ADDRESS)")
	fs.StringVar(&c.PreferencesAddress, "preferences-address", config.Env("PREFERENCES_ADDRESS", "127.0.0.1:7102"), "preferences gRPC address: host:port or a comma-separated list (PREFERENCES_ADDRESS)")
	fs.StringVar(&c.SharingAddress, "sharing-address", config.Env("SHARING_ADDRESS", "127.0.0.1:7103"), "sharing gRPC address: host:port or a comma-separated list (SHARING_ADDRESS)")
	fs.StringVar(&c.FulfillmentAddress, "fulfillment-address", config.Env("FULFILLMENT_ADDRESS", "127.0.0.1:7104"), "fulfillment gRPC address: host:port or a comma-separated list (FULFILLMENT_ADDRESS)")
	fs.StringVar(&c.FulfillmentHTTPAddr, "fulfillment-http-address", config.Env("FULFILLMENT_HTTP_ADDRESS", "http://127.0.0.1:7114"), "fulfillment's archive download endpoint; comma-separated URLs for several replicas (FULFILLMENT_HTTP_ADDRESS)")
	fs.StringVar(&c.CORSOrigins, "cors-origins", config.Env("GATEWAY_CORS_ORIGINS", "http://localhost:3000"), "web origins allowed by CORS, comma-separated (GATEWAY_CORS_ORIGINS)")
	fs.Int64Var(&c.MaxBodyBytes, "max-body-bytes", int64(config.EnvInt("GATEWAY_MAX_BODY_BYTES", 1<<20)), "largest request body (GATEWAY_MAX_BODY_BYTES)")
	fs.DurationVar(&c.Timeout, "timeout", config.EnvDuration("GATEWAY_TIMEOUT", 30*time.Second), "per-request timeout (GATEWAY_TIMEOUT)")
	fs.DurationVar(&c.JWKSRefetch, "jwks-refetch", config.EnvDuration("GATEWAY_JWKS_REFETCH", 10*time.Second), "least time between JWKS refetches for unknown keys (GATEWAY_JWKS_REFETCH)")
	fs.DurationVar(&c.RecentSignIn, "recent-signin", config.EnvDuration("GATEWAY_RECENT_SIGNIN", 10*time.Minute), "a password sign-in this recent skips the emailed code for privacy requests (GATEWAY_RECENT_SIGNIN)")
	fs.DurationVar(&c.SessionCheckTTL, "session-check-ttl", config.EnvDuration("GATEWAY_SESSION_CHECK_TTL", 2*time.Second), "how long a session's liveness is cached; a revoked session is refused within it (GATEWAY_SESSION_CHECK_TTL)")
	fs.StringVar(&c.TrustedProxies, "trusted-proxies", config.Env("GATEWAY_TRUSTED_PROXIES", ""), "reverse proxies (CIDRs or addresses, comma-separated) whose X-Forwarded-For names the client (GATEWAY_TRUSTED_PROXIES)")
	fs.StringVar(&c.DRPRedirectHosts, "drp-redirect-hosts", config.Env("GATEWAY_DRP_REDIRECT_HOSTS", ""), "hosts an authorized agent's redirect_to may name after a member confirms a DRP request, comma-separated; https only; none by default (GATEWAY_DRP_REDIRECT_HOSTS)")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", config.EnvDuration("GATEWAY_READ_TIMEOUT", time.Minute), "longest time to read a whole request, body included (GATEWAY_READ_TIMEOUT)")
	fs.StringVar(&c.TemporalUIURL, "temporal-ui-url", config.Env("GATEWAY_TEMPORAL_UI_URL", ""), "Temporal Web UI base URL the console links each request's workflow to; empty: no link (GATEWAY_TEMPORAL_UI_URL)")
	fs.IntVar(&c.SensitivePerMinute, "sensitive-per-minute", config.EnvInt("GATEWAY_SENSITIVE_PER_MINUTE", 10), "sign-in, verification and request creation per IP and per member per minute (GATEWAY_SENSITIVE_PER_MINUTE)")
}

// Validate reports what to set.
func (c Config) Validate() error {
	var p config.Problems
	p.Require(c.ListenAddr, "listen", "GATEWAY_LISTEN")
	for _, a := range [][3]string{{c.IdentityAddress, "identity-address", "IDENTITY_ADDRESS"}, {c.PreferencesAddress, "preferences-address", "PREFERENCES_ADDRESS"},
		{c.SharingAddress, "sharing-address", "SHARING_ADDRESS"}, {c.FulfillmentAddress, "fulfillment-address", "FULFILLMENT_ADDRESS"}} {
		p.Require(a[0], a[1], a[2])
	}
	for _, a := range strings.Split(c.FulfillmentHTTPAddr, ",") {
		u, err := url.Parse(strings.TrimSpace(a))
		p.Check(err == nil && u.Host != "", "-fulfillment-http-address must be an http:// URL or a comma-separated list of them")
	}
	p.Check(c.MaxBodyBytes > 0 && c.Timeout > 0 && c.SensitivePerMinute > 0, "limits must be positive")
	p.Check(c.SessionCheckTTL > 0 && c.SessionCheckTTL <= 5*time.Second, "-session-check-ttl must be between 0 and 5s (GATEWAY_SESSION_CHECK_TTL)")
	p.Check(c.ReadTimeout > 0 && c.RecentSignIn > 0, "-read-timeout and -recent-signin must be positive")
	_, perr := gw.ParseProxies(c.TrustedProxies)
	p.Check(perr == nil, "-trusted-proxies must be CIDRs or addresses, comma-separated (GATEWAY_TRUSTED_PROXIES)")
	return p.Err()
}

// Listen is the HTTP listen address.
func (c Config) Listen() string { return c.ListenAddr }

// Gateway is a built gateway.
type Gateway struct {
	handler     http.Handler
	conns       []*grpc.ClientConn
	logger      *slog.Logger
	readTimeout time.Duration
}

// New connects to the backends and builds the handler.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Gateway, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{logger: logger, readTimeout: cfg.ReadTimeout}
	if g.readTimeout <= 0 {
		g.readTimeout = time.Minute
	}
	sec := transport.FromEnv()
	proxies, err := gw.ParseProxies(cfg.TrustedProxies)
	if err != nil {
		return nil, err
	}
	recent, sessionTTL := cfg.RecentSignIn, cfg.SessionCheckTTL
	if recent <= 0 {
		recent = 10 * time.Minute
	}
	if sessionTTL <= 0 {
		sessionTTL = 2 * time.Second
	}
	dial := func(addr string) *grpc.ClientConn {
		c, err := sec.Dial(addr)
		if err != nil {
			return nil
		}
		g.conns = append(g.conns, c)
		return c
	}
	b := gw.Backends{Identity: dial(cfg.IdentityAddress), Preferences: dial(cfg.PreferencesAddress), Sharing: dial(cfg.SharingAddress), Fulfillment: dial(cfg.FulfillmentAddress)}
	if b.Identity == nil || b.Preferences == nil || b.Sharing == nil || b.Fulfillment == nil {
		g.Close()
		return nil, errors.New("gateway: a backend address is not valid")
	}
	for _, a := range strings.Split(cfg.FulfillmentHTTPAddr, ",") {
		u, err := url.Parse(strings.TrimSpace(a))
		if err != nil || u.Host == "" {
			g.Close()
			return nil, fmt.Errorf("gateway: FULFILLMENT_HTTP_ADDRESS: %q is not an http:// URL", a)
		}
		b.Downloads = append(b.Downloads, u)
	}
	var origins []string
	for _, o := range strings.Split(cfg.CORSOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			origins = append(origins, o)
		}
	}
	g.handler, err = gw.New(ctx, b, gw.Options{
		Logger: logger, CORSOrigins: origins, MaxBodyBytes: cfg.MaxBodyBytes, Timeout: cfg.Timeout, ServiceToken: sec.ServiceToken,
		RecentSignIn: recent, SensitiveRate: float64(cfg.SensitivePerMinute) / 60, SensitiveBurst: cfg.SensitivePerMinute, JWKSRefetch: cfg.JWKSRefetch,
		SessionCheckTTL: sessionTTL, TrustedProxies: proxies, DRPRedirectHosts: splitList(cfg.DRPRedirectHosts), TemporalUI: cfg.TemporalUIURL,
	})
	if err != nil {
		g.Close()
		return nil, err
	}
	return g, nil
}

// Handler is the gateway's HTTP handler.
func (g *Gateway) Handler() http.Handler { return g.handler }

// Serve serves HTTP on lis until ctx is done, then shuts down gracefully.
func (g *Gateway) Serve(ctx context.Context, lis net.Listener) error {
	if err := transport.FromEnv().Require(); err != nil {
		return err
	}
	// Slow clients cannot hold connections: headers within 10 s, the whole request
	// within the read timeout, idle keep-alives closed after 2 minutes. No write
	// timeout: archive downloads stream for as long as they need.
	srv := &http.Server{Handler: g.handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: g.readTimeout, IdleTimeout: 2 * time.Minute}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("gateway: %w", err)
	}
	return nil
}

// Close closes the backend connections.
func (g *Gateway) Close() error {
	for _, c := range g.conns {
		c.Close()
	}
	return nil
}

// splitList splits a comma-separated setting, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
