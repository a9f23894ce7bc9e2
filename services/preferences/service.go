// Package preferences wires the preferences service: communication choices and consent
// history, ad personalization and Global Privacy Control, profile visibility, social
// connections, viewing history and ratings. Behaviour lives in internal/prefs.
package preferences

import (
	"context"
	"errors"
	"flag"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
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
	"lethe.dev/platform/temporalclient"
	"lethe.dev/platform/transport"
	"lethe.dev/services/preferences/internal/mailing"
	"lethe.dev/services/preferences/internal/policychange"
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
	// Temporal runs the policy change-notice worker; without it publishing a policy
	// version is refused (TEMPORAL_DISABLED), since nobody would be told.
	Temporal          bool
	TemporalAddress   string
	TemporalNamespace string
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
	fs.BoolVar(&c.Temporal, "temporal", config.EnvBool("PREFERENCES_TEMPORAL", true), "run the policy change-notice worker; without it publishing a policy version fails (PREFERENCES_TEMPORAL)")
	fs.StringVar(&c.TemporalAddress, "temporal-address", config.Env("TEMPORAL_ADDRESS", "127.0.0.1:7233"), "Temporal frontend (TEMPORAL_ADDRESS)")
	fs.StringVar(&c.TemporalNamespace, "temporal-namespace", config.Env("TEMPORAL_NAMESPACE", "lethe"), "Temporal namespace (TEMPORAL_NAMESPACE)")
	fs.DurationVar(&c.UnsubscribeTTL, "unsubscribe-ttl", config.EnvDuration("PREFERENCES_UNSUBSCRIBE_TTL", 60*24*time.Hour), "how long unsubscribe links work (PREFERENCES_UNSUBSCRIBE_TTL)")
}

// Validate reports what to set.
func (c Config) Validate() error {
	var p config.Problems
	p.Require(c.ListenAddr, "listen", "PREFERENCES_LISTEN")
	p.Require(c.DatabaseURL, "database-url", "PREFERENCES_DATABASE_URL")
	p.Require(c.TokenKeyPath, "token-key", "PREFERENCES_TOKEN_KEY")
	p.Check(c.UnsubscribeTTL > 0, "-unsubscribe-ttl must be positive")
	if c.Temporal {
		p.Require(c.TemporalAddress, "temporal-address", "TEMPORAL_ADDRESS")
	}
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
	identity    *grpc.ClientConn
	fulfillment *grpc.ClientConn
	// temporal runs the policy change-notice workflows; nil without -temporal.
	temporal client.Client
	logger   *slog.Logger
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
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	svc := &Service{AuditLink: link, db: db, logger: logger,
		Server: &prefs.Server{DB: db, Tokens: tokens, Keys: keys, Logger: logger, Now: time.Now, TokenTTL: cfg.UnsubscribeTTL}}
	if cfg.IdentityAddress != "" {
		conn, err := transport.FromEnv().Dial(cfg.IdentityAddress)
		if err != nil {
			db.Close()
			return nil, err
		}
		svc.identity = conn
		svc.Server.PolicyMailer = identityMailer{identityv1.NewIdentityServiceClient(conn)}
		svc.Server.MarketingMailer = identityMailer{identityv1.NewIdentityServiceClient(conn)}
		svc.Server.Names = identityMailer{identityv1.NewIdentityServiceClient(conn)}
		svc.Server.SignUps = identityMailer{identityv1.NewIdentityServiceClient(conn)}
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
	if cfg.Temporal {
		c, err := temporalclient.Dial(cfg.TemporalAddress, cfg.TemporalNamespace, logger)
		if err != nil {
			svc.Close()
			return nil, err
		}
		svc.temporal = c
		svc.Server.PolicyNotices = policyNotices{c}
		svc.Server.MarketingMailings = marketingMailings{c}
	}
	return svc, nil
}

// policyNotices starts change-notice workflows. The workflow id is the version's, and
// starting joins a running workflow (and is refused after it ended), so a retried
// publish, or a resume at start-up, never starts a second one.
type policyNotices struct{ c client.Client }

func (n policyNotices) StartPolicyNotice(ctx context.Context, policy, version string, effective time.Time) error {
	_, err := n.c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: policychange.WorkflowID(policy, version), TaskQueue: policychange.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
	}, policychange.PolicyChangeNotice, policychange.Input{Policy: policy, Version: version, EffectiveTime: effective})
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		return nil // it ran already
	}
	return err
}

// marketingMailings starts mailing workflows, one per mailing id (joining a running one;
// refused after it ended, which is fine: the mailing was sent).
type marketingMailings struct{ c client.Client }

func (n marketingMailings) StartMarketingMailing(ctx context.Context, id string) error {
	_, err := n.c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: mailing.WorkflowID(id), TaskQueue: policychange.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
	}, mailing.MarketingMailing, mailing.Input{MailingID: id})
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		return nil
	}
	return err
}

// MailMarketing queues one marketing message; a member identity no longer knows
// (erased or disabled since the page was read) gets nothing.
func (m identityMailer) MailMarketing(ctx context.Context, memberID, reference, detail, requestID string) error {
	_, err := m.c.NotifyMember(ctx, &identityv1.NotifyMemberRequest{Name: "members/" + memberID, Template: identityv1.MessageTemplate_MESSAGE_TEMPLATE_MARKETING,
		Reference: reference, Detail: detail, RequestId: requestID})
	if status.Code(err) == codes.NotFound {
		return nil
	}
	return err
}

// identityMailer lists members and emails them through identity.
type identityMailer struct {
	c identityv1.IdentityServiceClient
}

func (m identityMailer) MemberPage(ctx context.Context, token string) ([]prefs.PageMember, string, error) {
	res, err := m.c.ListMembers(ctx, &identityv1.ListMembersRequest{PageSize: 100, PageToken: token})
	if err != nil {
		return nil, "", err
	}
	out := make([]prefs.PageMember, 0, len(res.GetMembers()))
	for _, mb := range res.GetMembers() {
		out = append(out, prefs.PageMember{ID: strings.TrimPrefix(mb.GetName(), "members/"), SignedUp: mb.GetCreateTime().AsTime()})
	}
	return out, res.GetNextPageToken(), nil
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

// SignedUp is when the member's account was created; a member identity does not know
// (erased) has none.
func (m identityMailer) SignedUp(ctx context.Context, memberID string) (time.Time, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := m.c.GetMember(ctx, &identityv1.GetMemberRequest{Name: "members/" + memberID})
	if status.Code(err) == codes.NotFound {
		return time.Time{}, false, nil
	}
	if err != nil || res.GetCreateTime() == nil {
		return time.Time{}, false, err
	}
	return res.GetCreateTime().AsTime(), true, nil
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

// Run runs the policy change-notice worker (with Temporal) and vacuums the key table
// after erasures (PostgreSQL) until shutdown.
func (s *Service) Run(ctx context.Context) error {
	if s.temporal != nil {
		w := policychange.NewWorker(s.temporal, &policychange.Activities{Versions: s.Server})
		mailing.Register(w, &mailing.Activities{Pages: s.Server})
		if err := w.Start(); err != nil {
			return err
		}
		defer w.Stop()
		go s.resumePolicyNotices(ctx)
	}
	if v := s.Server.Keys.Vacuumer(); v != nil {
		v.Run(ctx, VacuumInterval)
		return nil
	}
	<-ctx.Done()
	return nil
}

// resumePolicyNotices starts the workflows of versions whose emails have not all gone
// out, retrying until it succeeds or the service stops (Temporal may still be starting).
func (s *Service) resumePolicyNotices(ctx context.Context) {
	for wait := time.Second; ; wait = min(2*wait, time.Minute) {
		err := s.Server.ResumePolicyNotices(ctx)
		if err == nil || ctx.Err() != nil {
			return
		}
		s.logger.Warn("resuming policy change emails: will retry", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// Close closes the Temporal client and the database.
func (s *Service) Close() error {
	_ = s.CloseAudit()
	if s.temporal != nil {
		s.temporal.Close()
	}
	if s.identity != nil {
		_ = s.identity.Close()
	}
	if s.fulfillment != nil {
		_ = s.fulfillment.Close()
	}
	return s.db.Close()
}

// ReadyChecks is what /readyz checks: the database and, when used, Temporal answer.
func (s *Service) ReadyChecks() []observe.Check {
	checks := []observe.Check{observe.DatabaseCheck(s.db)}
	if s.temporal != nil {
		checks = append(checks, observe.Check{Name: "temporal", Fn: func(ctx context.Context) error {
			_, err := s.temporal.CheckHealth(ctx, &client.CheckHealthRequest{})
			return err
		}})
	}
	return checks
}
