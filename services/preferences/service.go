// Package preferences wires the preferences service: communication choices and consent
// history, ad personalization and Global Privacy Control, profile visibility, social
// connections, viewing history and ratings. Behaviour lives in internal/prefs.
package preferences

import (
	"context"
	"flag"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	identityv1 "lethe.dev/gen/lethe/identity/v1"
	preferencesv1 "lethe.dev/gen/lethe/preferences/v1"
	subjectv1 "lethe.dev/gen/lethe/subject/v1"
	"lethe.dev/platform/app"
	"lethe.dev/platform/authz"
	"lethe.dev/platform/config"
	"lethe.dev/platform/grpcserver"
	"lethe.dev/platform/keyfile"
	"lethe.dev/platform/observe"
	"lethe.dev/platform/shred"
	"lethe.dev/platform/storage"
	"lethe.dev/platform/transport"
	"lethe.dev/services/preferences/internal/prefs"
	"lethe.dev/services/preferences/internal/store"
)

// Config is the preferences service's configuration.
type Config struct {
	ListenAddr         string
	FulfillmentAddress string // where operator actions are audited; empty records none
	DatabaseURL        string
	TokenKeyPath       string
	UnsubscribeTTL     time.Duration
	// KEKURI names the key-encryption key that wraps members' data keys; empty means
	// file:kek.json beside the token key.
	KEKURI string
	// IdentityAddress is where policy change emails are sent (identity lists the members
	// and holds their addresses); empty sends none.
	IdentityAddress string
	// PolicyNotifyInterval is how often unsent policy change emails are looked for.
	PolicyNotifyInterval time.Duration
}

// RegisterFlags registers flags whose defaults come from the environment.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	data := config.Env("LETHE_DATA_DIR", "data")
	fs.StringVar(&c.ListenAddr, "listen", config.Env("PREFERENCES_LISTEN", "127.0.0.1:7102"), "gRPC listen address (PREFERENCES_LISTEN)")
	fs.StringVar(&c.FulfillmentAddress, "fulfillment-address", config.Env("FULFILLMENT_ADDRESS", "127.0.0.1:7104"), "fulfillment gRPC address, for the audit log of operator actions (FULFILLMENT_ADDRESS)")
	fs.StringVar(&c.DatabaseURL, "database-url", config.Env("PREFERENCES_DATABASE_URL", "sqlite:"+filepath.Join(data, "preferences.db")), "sqlite:PATH or postgres:// URL (PREFERENCES_DATABASE_URL)")
	fs.StringVar(&c.TokenKeyPath, "token-key", config.Env("PREFERENCES_TOKEN_KEY", filepath.Join(data, "preferences", "unsubscribe.keyset.json")), "Tink AEAD keyset sealing unsubscribe tokens, shared by every replica: PATH, file:PATH or file:PATH?kek=KMS-URI; created when missing (PREFERENCES_TOKEN_KEY)")
	fs.StringVar(&c.KEKURI, "kek-uri", config.Env("PREFERENCES_KEK_URI", "file:"+filepath.Join(data, "preferences", "kek.json")), "key-encryption key wrapping members' data keys: file:PATH (dev) or a Tink KMS URI (PREFERENCES_KEK_URI)")
	fs.StringVar(&c.IdentityAddress, "identity-address", config.Env("IDENTITY_ADDRESS", "127.0.0.1:7101"), "identity gRPC address, which emails members about policy changes (IDENTITY_ADDRESS)")
	fs.DurationVar(&c.PolicyNotifyInterval, "policy-notify-interval", config.EnvDuration("PREFERENCES_POLICY_NOTIFY_INTERVAL", 5*time.Second), "how often unsent policy change emails are looked for (PREFERENCES_POLICY_NOTIFY_INTERVAL)")
	fs.DurationVar(&c.UnsubscribeTTL, "unsubscribe-ttl", config.EnvDuration("PREFERENCES_UNSUBSCRIBE_TTL", 60*24*time.Hour), "how long unsubscribe links work (PREFERENCES_UNSUBSCRIBE_TTL)")
}

// Validate reports what to set.
func (c Config) Validate() error {
	var p config.Problems
	p.Require(c.ListenAddr, "listen", "PREFERENCES_LISTEN")
	p.Require(c.DatabaseURL, "database-url", "PREFERENCES_DATABASE_URL")
	p.Require(c.TokenKeyPath, "token-key", "PREFERENCES_TOKEN_KEY")
	p.Check(c.UnsubscribeTTL > 0, "-unsubscribe-ttl must be positive")
	p.Check(c.PolicyNotifyInterval >= 0, "-policy-notify-interval must not be negative")
	return p.Err()
}

// Listen is the gRPC listen address.
func (c Config) Listen() string { return c.ListenAddr }

// Database names the database and its migrations, for the binary's -migrate.
func (c Config) Database() (string, fs.FS) { return c.DatabaseURL, store.Migrations }

// Service is a built preferences service.
type Service struct {
	authz.AuditLink
	Server *prefs.Server
	db     *storage.DB
	// identity is the connection policy change emails go through; nil sends none.
	identity       *grpc.ClientConn
	fulfillment    *grpc.ClientConn
	notifyInterval time.Duration
}

// New opens and migrates the database and loads the token key.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Service, error) {
	db, err := storage.Open(ctx, cfg.DatabaseURL, store.Migrations)
	if err != nil {
		return nil, err
	}
	tokens, err := keyfile.AEAD(cfg.TokenKeyPath)
	if err != nil {
		db.Close()
		return nil, err
	}
	link, err := authz.DialAudit(cfg.FulfillmentAddress)
	if err != nil {
		db.Close()
		return nil, err
	}
	kekURI := cfg.KEKURI
	if kekURI == "" {
		tokenPath, _, _ := strings.Cut(strings.TrimPrefix(cfg.TokenKeyPath, "file:"), "?")
		kekURI = "file:" + filepath.Join(filepath.Dir(tokenPath), "kek.json")
	}
	kek, err := shred.OpenKEK(kekURI)
	if err != nil {
		db.Close()
		return nil, err
	}
	keys, err := shred.Open(ctx, db, kek)
	if err != nil {
		db.Close()
		return nil, err
	}
	svc := &Service{AuditLink: link, db: db, notifyInterval: cfg.PolicyNotifyInterval,
		Server: &prefs.Server{DB: db, Tokens: tokens, Keys: keys, Logger: logger, Now: time.Now, TokenTTL: cfg.UnsubscribeTTL}}
	if svc.notifyInterval <= 0 {
		svc.notifyInterval = 5 * time.Second
	}
	if cfg.IdentityAddress != "" {
		conn, err := transport.FromEnv().Dial(cfg.IdentityAddress)
		if err != nil {
			db.Close()
			return nil, err
		}
		svc.identity = conn
		svc.Server.PolicyMailer = identityMailer{identityv1.NewIdentityServiceClient(conn)}
		svc.Server.Names = identityMailer{identityv1.NewIdentityServiceClient(conn)}
	}
	if cfg.FulfillmentAddress != "" {
		// Per-member legal holds live in fulfillment; deletions ask it first.
		conn, err := transport.FromEnv().Dial(cfg.FulfillmentAddress)
		if err != nil {
			db.Close()
			return nil, err
		}
		svc.fulfillment = conn
		svc.Server.Holds = prefs.FulfillmentHolds{Client: fulfillmentv1.NewFulfillmentServiceClient(conn)}
	}
	return svc, nil
}

// identityMailer lists members and emails them through identity.
type identityMailer struct {
	c identityv1.IdentityServiceClient
}

func (m identityMailer) MemberPage(ctx context.Context, token string) ([]string, string, error) {
	res, err := m.c.ListMembers(ctx, &identityv1.ListMembersRequest{PageSize: 100, PageToken: token})
	if err != nil {
		return nil, "", err
	}
	ids := make([]string, 0, len(res.GetMembers()))
	for _, mb := range res.GetMembers() {
		ids = append(ids, strings.TrimPrefix(mb.GetName(), "members/"))
	}
	return ids, res.GetNextPageToken(), nil
}

// DisplayName is the member's name as identity keeps it (profiles show it when its
// visibility allows).
func (m identityMailer) DisplayName(ctx context.Context, memberID string) (string, error) {
	res, err := m.c.GetMember(ctx, &identityv1.GetMemberRequest{Name: "members/" + memberID})
	if err != nil {
		return "", err
	}
	return res.GetFullName(), nil
}

func (m identityMailer) MailPolicyChange(ctx context.Context, memberID, reference, detail, requestID string) error {
	_, err := m.c.NotifyMember(ctx, &identityv1.NotifyMemberRequest{Name: "members/" + memberID, Template: identityv1.MessageTemplate_MESSAGE_TEMPLATE_POLICY_CHANGE,
		Reference: reference, Detail: detail, RequestId: requestID})
	if status.Code(err) == codes.NotFound { // erased or disabled since the page was read
		return nil
	}
	return err
}

// Build is New as an app.Service, for app.Main.
func Build(ctx context.Context, cfg *Config, logger *slog.Logger) (app.Service, error) {
	return New(ctx, *cfg, logger)
}

// Register registers PreferencesService and the data-subject contract.
func (s *Service) Register(srv *grpcserver.Server) {
	preferencesv1.RegisterPreferencesServiceServer(srv, s.Server)
	subjectv1.RegisterDataSubjectServiceServer(srv, s.Server)
}

// VacuumInterval is how often, at most, the key table is vacuumed on PostgreSQL after
// members' keys were destroyed (one VACUUM per batch of erasures).
const VacuumInterval = 10 * time.Second

// Run vacuums the key table after erasures (PostgreSQL) and sends policy change emails
// until shutdown.
func (s *Service) Run(ctx context.Context) error {
	if s.Server.PolicyMailer != nil {
		go s.Server.RunPolicyNotifier(ctx, s.notifyInterval)
	}
	if v := s.Server.Keys.Vacuumer(); v != nil {
		v.Run(ctx, VacuumInterval)
		return nil
	}
	<-ctx.Done()
	return nil
}

// Close closes the database.
func (s *Service) Close() error {
	_ = s.CloseAudit()
	if s.identity != nil {
		_ = s.identity.Close()
	}
	if s.fulfillment != nil {
		_ = s.fulfillment.Close()
	}
	return s.db.Close()
}

// ReadyChecks is what /readyz checks: the database answers.
func (s *Service) ReadyChecks() []observe.Check { return []observe.Check{observe.DatabaseCheck(s.db)} }
