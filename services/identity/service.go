// Package identity wires the identity service: accounts and personal data encrypted
// per member, sign-in with device sessions, verification codes and child reports. The
// behaviour lives in internal/; this file is the public wiring used by cmd/identity and
// by the all-in-one dev stack.
package identity

import (
	"context"
	"flag"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	identityv1 "lethe.dev/gen/lethe/identity/v1"
	subjectv1 "lethe.dev/gen/lethe/subject/v1"
	"lethe.dev/platform/app"
	"lethe.dev/platform/authz"
	"lethe.dev/platform/config"
	"lethe.dev/platform/grpcserver"
	"lethe.dev/platform/legalhold"
	"lethe.dev/platform/observe"
	"lethe.dev/platform/shred"
	"lethe.dev/platform/storage"
	"lethe.dev/platform/transport"
	"lethe.dev/services/identity/internal/grpcapi"
	domain "lethe.dev/services/identity/internal/identity"
	"lethe.dev/services/identity/internal/keys"
	"lethe.dev/services/identity/internal/store"
)

// Config is identity's configuration.
type Config struct {
	FulfillmentAddress string // where operator actions are audited; empty records none
	ListenAddr         string
	DatabaseURL        string
	DataDir            string
	KeyDir             string
	KEKURI             string
	KeyRotation        time.Duration
	SMTPAddr           string // empty: messages go to the file mailbox under DataDir
	SMTPFrom           string
}

// RegisterFlags registers flags whose defaults come from the environment.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	data := config.Env("LETHE_DATA_DIR", "data")
	fs.StringVar(&c.ListenAddr, "listen", config.Env("IDENTITY_LISTEN", "127.0.0.1:7101"), "gRPC listen address (IDENTITY_LISTEN)")
	fs.StringVar(&c.FulfillmentAddress, "fulfillment-address", config.Env("FULFILLMENT_ADDRESS", "127.0.0.1:7104"), "fulfillment gRPC address, for the audit log of operator actions (FULFILLMENT_ADDRESS)")
	fs.StringVar(&c.DatabaseURL, "database-url", config.Env("IDENTITY_DATABASE_URL", "sqlite:"+filepath.Join(data, "identity.db")), "sqlite:PATH or postgres:// URL (IDENTITY_DATABASE_URL)")
	fs.StringVar(&c.DataDir, "data-dir", filepath.Join(data, "identity"), "directory for the dev mailbox, and for keys unless -key-dir (LETHE_DATA_DIR/identity)")
	fs.StringVar(&c.KeyDir, "key-dir", config.Env("IDENTITY_KEY_DIR", ""), "directory of the blind-index and token-signing keysets (encrypted under the KEK), shared by every replica; empty: -data-dir (IDENTITY_KEY_DIR)")
	fs.StringVar(&c.KEKURI, "kek-uri", config.Env("IDENTITY_KEK_URI", "file:"+filepath.Join(data, "identity", "kek.json")), "key-encryption key: file:PATH (dev) or a KMS key URI with a registered Tink KMS client (IDENTITY_KEK_URI)")
	fs.DurationVar(&c.KeyRotation, "key-rotation", config.EnvDuration("IDENTITY_KEY_ROTATION", 30*24*time.Hour), "token signing key rotation period (IDENTITY_KEY_ROTATION)")
	fs.StringVar(&c.SMTPAddr, "smtp-addr", config.Env("IDENTITY_SMTP_ADDR", ""), "SMTP relay host:port; empty writes mail to DATA_DIR/identity/mailbox.jsonl (IDENTITY_SMTP_ADDR)")
	fs.StringVar(&c.SMTPFrom, "smtp-from", config.Env("IDENTITY_SMTP_FROM", "privacy@lethe.invalid"), "sender address (IDENTITY_SMTP_FROM)")
}

// Validate reports what to set.
func (c Config) Validate() error {
	var p config.Problems
	p.Require(c.ListenAddr, "listen", "IDENTITY_LISTEN")
	p.Require(c.DatabaseURL, "database-url", "IDENTITY_DATABASE_URL")
	p.Require(c.KEKURI, "kek-uri", "IDENTITY_KEK_URI")
	p.Check(strings.Contains(c.KEKURI, ":"), "-kek-uri must be file:PATH or a KMS key URI such as gcp-kms://…")
	return p.Err()
}

// Listen is the gRPC listen address.
func (c Config) Listen() string { return c.ListenAddr }

// Database names the database and its migrations, for the binary's -migrate.
func (c Config) Database() (string, fs.FS) { return c.DatabaseURL, store.Migrations }

// Service is a built identity service.
type Service struct {
	authz.AuditLink
	Domain      *domain.Service
	db          *storage.DB
	fulfillment *grpc.ClientConn
	logger      *slog.Logger
	metrics     metric.Registration
}

// New opens the database (migrating it) and the key ring.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Service, error) {
	db, err := storage.Open(ctx, cfg.DatabaseURL, store.Migrations)
	if err != nil {
		return nil, err
	}
	keyDir := cfg.KeyDir
	if keyDir == "" {
		keyDir = cfg.DataDir
	}
	ring, err := keys.Open(cfg.KEKURI, keyDir, cfg.KeyRotation, time.Now())
	if err != nil {
		db.Close()
		return nil, err
	}
	var sender domain.Sender = &domain.FileSender{Path: filepath.Join(cfg.DataDir, "mailbox.jsonl")}
	if cfg.SMTPAddr != "" {
		sender = domain.SMTPSender{Addr: cfg.SMTPAddr, From: cfg.SMTPFrom}
	}
	link, err := authz.DialAudit(cfg.FulfillmentAddress)
	if err != nil {
		db.Close()
		return nil, err
	}
	metrics, err := domain.RegisterMetrics(db, time.Now)
	if err != nil {
		db.Close()
		return nil, err
	}
	svc := &Service{AuditLink: link,
		Domain: &domain.Service{DB: db, Keys: ring, Sender: sender, Logger: logger, Now: time.Now,
			Vacuum: shred.NewVacuumer(db, "members", "sessions", "outbox")},
		db: db, logger: logger, metrics: metrics,
	}
	if cfg.FulfillmentAddress != "" {
		// Per-member legal holds live in fulfillment; erasure and the retention purge ask it.
		conn, err := transport.FromEnv().Dial(cfg.FulfillmentAddress)
		if err != nil {
			svc.Close()
			return nil, err
		}
		svc.fulfillment = conn
		svc.Domain.Holds = legalhold.Fulfillment{Client: fulfillmentv1.NewFulfillmentServiceClient(conn)}
	}
	return svc, nil
}

// Build is New as an app.Service, for app.Main.
func Build(ctx context.Context, cfg *Config, logger *slog.Logger) (app.Service, error) {
	return New(ctx, *cfg, logger)
}

// Register registers IdentityService and the data-subject contract.
func (s *Service) Register(srv *grpcserver.Server) {
	api := &grpcapi.Server{Svc: s.Domain}
	identityv1.RegisterIdentityServiceServer(srv, api)
	subjectv1.RegisterDataSubjectServiceServer(srv, api)
}

// Run delivers queued mail (verification codes) until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	if v := s.Domain.Vacuum; v != nil {
		go v.Run(ctx, VacuumInterval)
	}
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	purge := time.NewTicker(PurgeInterval)
	defer purge.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-purge.C:
			if _, err := s.Domain.Purge(ctx); err != nil && ctx.Err() == nil {
				s.logger.Warn("retention purge failed; will retry", "err", err)
			}
		case <-t.C:
			if _, err := s.Domain.DeliverPending(ctx, 100); err != nil && ctx.Err() == nil {
				s.logger.Warn("mail delivery failed; will retry", "err", err)
			}
		}
	}
}

// PurgeInterval is how often records past their retention periods are deleted
// (identity.Purge; the periods are in the README).
const PurgeInterval = time.Hour

// VacuumInterval is how often, at most, erased members' rows are vacuumed on PostgreSQL
// (one VACUUM per batch of erasures).
const VacuumInterval = 10 * time.Second

// Close closes the database.
func (s *Service) Close() error {
	_ = s.CloseAudit()
	if s.fulfillment != nil {
		_ = s.fulfillment.Close()
	}
	if s.metrics != nil {
		_ = s.metrics.Unregister()
	}
	return s.db.Close()
}

// PII is a member's personal data, for in-process callers such as the dev stack's tests.
type PII = domain.PII

// ReadyChecks is what /readyz checks: the database answers.
func (s *Service) ReadyChecks() []observe.Check { return []observe.Check{observe.DatabaseCheck(s.db)} }
