// Package sharing wires the third-party sharing service: partners, objections, advance
// notices (Temporal workflows), the disclosure log and onward erasure. Behaviour lives in
// internal/sharing and internal/notice.
package sharing

import (
	"context"
	"errors"
	"flag"
	"io/fs"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/tink-crypto/tink-go/v2/prf"
	"go.opentelemetry.io/otel/metric"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	identityv1 "lethe.dev/gen/lethe/identity/v1"
	preferencesv1 "lethe.dev/gen/lethe/preferences/v1"
	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
	subjectv1 "lethe.dev/gen/lethe/subject/v1"
	"lethe.dev/platform/app"
	"lethe.dev/platform/authz"
	"lethe.dev/platform/config"
	"lethe.dev/platform/grpcserver"
	"lethe.dev/platform/keyfile"
	"lethe.dev/platform/legalhold"
	"lethe.dev/platform/observe"
	"lethe.dev/platform/storage"
	"lethe.dev/platform/temporalclient"
	"lethe.dev/platform/transport"
	"lethe.dev/services/sharing/internal/notice"
	impl "lethe.dev/services/sharing/internal/sharing"
	"lethe.dev/services/sharing/internal/store"
	"lethe.dev/services/sharing/internal/transfer"
)

// Config is the sharing service's configuration.
type Config struct {
	FulfillmentAddress string // where operator actions are audited; empty records none
	ListenAddr         string
	DatabaseURL        string
	DataDir            string
	TemporalAddress    string
	TemporalNamespace  string
	Temporal           bool
	AllowLoopbackHTTP  bool
	PublicURL          string
	WebhookTimeout     time.Duration
	SecretsKeyset      string
	PseudonymKeyset    string
	// PreferencesAddress is where members' ad choices are read (GPC, sale/sharing opt-out).
	PreferencesAddress string
	// IdentityAddress is where notice emails are sent (identity holds the address).
	IdentityAddress string
}

// RegisterFlags registers flags whose defaults come from the environment.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	data := config.Env("LETHE_DATA_DIR", "data")
	fs.StringVar(&c.ListenAddr, "listen", config.Env("SHARING_LISTEN", "127.0.0.1:7103"), "gRPC listen address (SHARING_LISTEN)")
	fs.StringVar(&c.FulfillmentAddress, "fulfillment-address", config.Env("FULFILLMENT_ADDRESS", "127.0.0.1:7104"), "fulfillment gRPC address, for the audit log of operator actions (FULFILLMENT_ADDRESS)")
	fs.StringVar(&c.DatabaseURL, "database-url", config.Env("SHARING_DATABASE_URL", "sqlite:"+filepath.Join(data, "sharing.db")), "sqlite:PATH or postgres:// URL (SHARING_DATABASE_URL)")
	fs.StringVar(&c.DataDir, "data-dir", filepath.Join(data, "sharing"), "directory for keys (LETHE_DATA_DIR/sharing)")
	fs.StringVar(&c.TemporalAddress, "temporal-address", config.Env("TEMPORAL_ADDRESS", "127.0.0.1:7233"), "Temporal frontend (TEMPORAL_ADDRESS)")
	fs.StringVar(&c.TemporalNamespace, "temporal-namespace", config.Env("TEMPORAL_NAMESPACE", "lethe"), "Temporal namespace (TEMPORAL_NAMESPACE)")
	fs.BoolVar(&c.Temporal, "temporal", config.EnvBool("SHARING_TEMPORAL", true), "run the notice worker; without it NotifyMembers fails (SHARING_TEMPORAL)")
	fs.BoolVar(&c.AllowLoopbackHTTP, "allow-loopback-http", config.EnvBool("SHARING_ALLOW_LOOPBACK_HTTP", true), "accept http:// webhooks on loopback hosts; turn off in production (SHARING_ALLOW_LOOPBACK_HTTP)")
	fs.StringVar(&c.PublicURL, "public-url", config.Env("SHARING_PUBLIC_URL", "http://127.0.0.1:8080"), "public gateway URL partners call back (SHARING_PUBLIC_URL)")
	fs.StringVar(&c.SecretsKeyset, "secrets-keyset", config.Env("SHARING_SECRETS_KEYSET", ""), "Tink AEAD keyset sealing partner webhook secrets, shared by every replica: PATH, file:PATH or file:PATH?kek=KMS-URI; created when missing; empty: -data-dir/secrets.keyset.json (SHARING_SECRETS_KEYSET)")
	fs.StringVar(&c.PseudonymKeyset, "pseudonym-keyset", config.Env("SHARING_PSEUDONYM_KEYSET", ""), "Tink PRF keyset deriving partner pseudonyms, shared by every replica (same forms); empty: -data-dir/pseudonyms.keyset.json (SHARING_PSEUDONYM_KEYSET)")
	fs.StringVar(&c.IdentityAddress, "identity-address", config.Env("IDENTITY_ADDRESS", "127.0.0.1:7101"), "identity gRPC address, which emails members their advance notices (IDENTITY_ADDRESS)")
	fs.StringVar(&c.PreferencesAddress, "preferences-address", config.Env("PREFERENCES_ADDRESS", "127.0.0.1:7102"), "preferences gRPC address, read for members' ad choices before any sale or sharing (PREFERENCES_ADDRESS)")
	fs.DurationVar(&c.WebhookTimeout, "webhook-timeout", config.EnvDuration("SHARING_WEBHOOK_TIMEOUT", 10*time.Second), "timeout of one webhook call (SHARING_WEBHOOK_TIMEOUT)")
}

// Validate reports what to set.
func (c Config) Validate() error {
	var p config.Problems
	p.Require(c.ListenAddr, "listen", "SHARING_LISTEN")
	p.Require(c.DatabaseURL, "database-url", "SHARING_DATABASE_URL")
	p.Require(c.PreferencesAddress, "preferences-address", "PREFERENCES_ADDRESS")
	p.Require(c.IdentityAddress, "identity-address", "IDENTITY_ADDRESS")
	if c.Temporal {
		p.Require(c.TemporalAddress, "temporal-address", "TEMPORAL_ADDRESS")
	}
	p.Check(c.WebhookTimeout > 0, "-webhook-timeout must be positive")
	return p.Err()
}

// Listen is the gRPC listen address.
func (c Config) Listen() string { return c.ListenAddr }

// Database names the database and its migrations, for the binary's -migrate.
func (c Config) Database() (string, fs.FS) { return c.DatabaseURL, store.Migrations }

// Service is a built sharing service.
type Service struct {
	authz.AuditLink
	Server      *impl.Server
	db          *storage.DB
	metrics     metric.Registration
	prefs       *grpc.ClientConn
	identity    *grpc.ClientConn
	fulfillment *grpc.ClientConn
	temporal    client.Client
	logger      *slog.Logger
}

// New opens the database, the keys and (when enabled) the Temporal client.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Service, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	db, err := storage.Open(ctx, cfg.DatabaseURL, store.Migrations)
	if err != nil {
		return nil, err
	}
	secretsURL, pseudonymURL := cfg.SecretsKeyset, cfg.PseudonymKeyset
	if secretsURL == "" {
		secretsURL = filepath.Join(cfg.DataDir, "secrets.keyset.json")
	}
	if pseudonymURL == "" {
		pseudonymURL = filepath.Join(cfg.DataDir, "pseudonyms.keyset.json")
	}
	secrets, err := keyfile.AEAD(secretsURL)
	if err != nil {
		db.Close()
		return nil, err
	}
	kh, err := keyfile.LoadOrCreate(pseudonymURL, prf.HMACSHA256PRFKeyTemplate())
	if err != nil {
		db.Close()
		return nil, err
	}
	keys, err := prf.NewPRFSet(kh)
	if err != nil {
		db.Close()
		return nil, err
	}
	link, err := authz.DialAudit(cfg.FulfillmentAddress)
	if err != nil {
		db.Close()
		return nil, err
	}
	s := &Service{AuditLink: link, db: db, logger: logger}
	if s.metrics, err = impl.RegisterMetrics(db); err != nil {
		db.Close()
		return nil, err
	}
	s.Server = &impl.Server{
		DB: db, Secrets: secrets, Keys: keys, Logger: logger, Now: time.Now,
		AllowLoopbackHTTP: cfg.AllowLoopbackHTTP, PublicURL: cfg.PublicURL,
		HTTP: &http.Client{Timeout: cfg.WebhookTimeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}
	if cfg.PreferencesAddress != "" {
		conn, err := transport.FromEnv().Dial(cfg.PreferencesAddress)
		if err != nil {
			db.Close()
			return nil, err
		}
		s.prefs = conn
		s.Server.AdChoices = adChoices{preferencesv1.NewPreferencesServiceClient(conn)}
		s.Server.PolicyConsent = adChoices{preferencesv1.NewPreferencesServiceClient(conn)}
	}
	if cfg.IdentityAddress != "" {
		conn, err := transport.FromEnv().Dial(cfg.IdentityAddress)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.identity = conn
		s.Server.Members = identityMembers{identityv1.NewIdentityServiceClient(conn)}
	}
	if cfg.FulfillmentAddress != "" {
		// Per-member legal holds live in fulfillment; erasing and onward erasure ask it first.
		conn, err := transport.FromEnv().Dial(cfg.FulfillmentAddress)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.fulfillment = conn
		s.Server.Holds = legalhold.Fulfillment{Client: fulfillmentv1.NewFulfillmentServiceClient(conn)}
	}
	if cfg.Temporal {
		c, err := temporalclient.Dial(cfg.TemporalAddress, cfg.TemporalNamespace, logger)
		if err != nil {
			db.Close()
			return nil, err
		}
		s.temporal = c
		s.Server.Notifier = temporalNotifier{c}
		s.Server.Acks = temporalNotifier{c}
		s.Server.Transfers = temporalNotifier{c}
	}
	return s, nil
}

// Build is New as an app.Service, for app.Main.
func Build(ctx context.Context, cfg *Config, logger *slog.Logger) (app.Service, error) {
	return New(ctx, *cfg, logger)
}

// Register registers SharingService and the data-subject contract.
func (s *Service) Register(srv *grpcserver.Server) {
	sharingv1.RegisterSharingServiceServer(srv, s.Server)
	subjectv1.RegisterDataSubjectServiceServer(srv, s.Server)
}

// Run runs the notice worker until ctx is done (or waits, without Temporal).
func (s *Service) Run(ctx context.Context) error {
	if s.temporal == nil {
		<-ctx.Done()
		return nil
	}
	a := &notice.Activities{DB: s.db, Now: time.Now, ObjectionURL: s.Server.NoticeObjectionURL}
	if s.identity != nil {
		a.Mailer = identityMailer{identityv1.NewIdentityServiceClient(s.identity)}
	}
	w := notice.NewWorker(s.temporal, a)
	w.RegisterWorkflow(transfer.BusinessTransfer)
	w.RegisterActivity(&transfer.Activities{Transfers: s.Server})
	if err := w.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	w.Stop()
	return nil
}

// Close closes the Temporal client and the database.
func (s *Service) Close() error {
	_ = s.CloseAudit()
	if s.metrics != nil {
		_ = s.metrics.Unregister()
	}
	if s.temporal != nil {
		s.temporal.Close()
	}
	if s.prefs != nil {
		s.prefs.Close()
	}
	if s.identity != nil {
		s.identity.Close()
	}
	if s.fulfillment != nil {
		s.fulfillment.Close()
	}
	return s.db.Close()
}

// temporalNotifier starts notice workflows. Starting uses the existing run when one is
// already there, so a retried NotifyMembers cannot start a notice twice.
type temporalNotifier struct{ c client.Client }

func (n temporalNotifier) StartNotice(ctx context.Context, noticeID string, period time.Duration) error {
	_, err := n.c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: notice.WorkflowID(noticeID), TaskQueue: notice.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
	}, notice.Notice, notice.Input{NoticeID: noticeID, NoticePeriod: period})
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		return nil // it ran already
	}
	return err
}

// Onward-erasure workflows belong to fulfillment; their id and signal name are its
// contract (lethe.dev/services/fulfillment/internal/request: OnwardWorkflowID,
// OnwardAckSignal), repeated here because services never import each other.
const (
	onwardWorkflowPrefix = "onward-erasure/"
	onwardAckSignal      = "onward-ack"
)

// OnwardAcknowledged signals the request's onward-erasure workflow for the partner.
func (n temporalNotifier) OnwardAcknowledged(ctx context.Context, requestID, partner string) error {
	err := n.c.SignalWorkflow(ctx, onwardWorkflowPrefix+requestID+"/"+partner, "", onwardAckSignal, nil)
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return nil // already ended
	}
	return err
}

func (n temporalNotifier) SignalObjection(ctx context.Context, noticeID string) error {
	err := n.c.SignalWorkflow(ctx, notice.WorkflowID(noticeID), "", notice.ObjectionSignal, nil)
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return nil // already ended
	}
	return err
}

// ReadyChecks is what /readyz checks: the database and, when used, Temporal answer.
func (s *Service) ReadyChecks() []observe.Check {
	checks := []observe.Check{observe.DatabaseCheck(s.db)}
	if s.temporal != nil {
		checks = append(checks, temporalCheck(s.temporal))
	}
	return checks
}

func temporalCheck(c client.Client) observe.Check {
	return observe.Check{Name: "temporal", Fn: func(ctx context.Context) error {
		_, err := c.CheckHealth(ctx, &client.CheckHealthRequest{})
		return err
	}}
}

// adChoices reads a member's ad choices from preferences over gRPC, as an internal caller.
type adChoices struct {
	c preferencesv1.PreferencesServiceClient
}

func (a adChoices) AdChoice(ctx context.Context, memberID string) (impl.AdChoice, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	p, err := a.c.GetAdPreferences(ctx, &preferencesv1.GetAdPreferencesRequest{Name: "members/" + memberID + "/adPreferences"})
	if err != nil {
		return impl.AdChoice{}, err
	}
	return impl.AdChoice{PersonalizedAds: p.GetPersonalizedAds(), SaleSharingOptOut: p.GetSaleSharingOptOut(), GPC: p.GetGpcSignalTime() != nil}, nil
}

// MissingPolicyVersions asks preferences which policy changes for purpose the member
// has yet to accept.
func (a adChoices) MissingPolicyVersions(ctx context.Context, memberID, purpose string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := a.c.CheckPolicyConsent(ctx, &preferencesv1.CheckPolicyConsentRequest{Member: "members/" + memberID, Purpose: purpose})
	if err != nil {
		return nil, err
	}
	return res.GetMissingVersions(), nil
}

// StartTransfer starts a business transfer's workflow, or joins the running one.
func (n temporalNotifier) StartTransfer(ctx context.Context, transferID string, effective time.Time) error {
	_, err := n.c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: transfer.WorkflowID(transferID), TaskQueue: transfer.TaskQueue,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
	}, transfer.BusinessTransfer, transfer.Input{TransferID: transferID, EffectiveTime: effective})
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		return nil // it ran already
	}
	return err
}

// identityMembers lists members through identity, as an internal caller.
type identityMembers struct {
	c identityv1.IdentityServiceClient
}

func (m identityMembers) MemberPage(ctx context.Context, token string) ([]string, string, error) {
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

// MemberSignUps lists members newest first with their sign-up times, as an internal
// caller (the business-transfer newcomer sweeps).
func (m identityMembers) MemberSignUps(ctx context.Context, token string) ([]impl.MemberSignUp, string, error) {
	res, err := m.c.ListMembers(ctx, &identityv1.ListMembersRequest{PageSize: 100, PageToken: token})
	if err != nil {
		return nil, "", err
	}
	out := make([]impl.MemberSignUp, 0, len(res.GetMembers()))
	for _, mb := range res.GetMembers() {
		out = append(out, impl.MemberSignUp{ID: strings.TrimPrefix(mb.GetName(), "members/"), SignedUp: mb.GetCreateTime().AsTime()})
	}
	return out, res.GetNextPageToken(), nil
}

// identityMailer sends notice emails through identity's NotifyMember, as an internal caller.
type identityMailer struct {
	c identityv1.IdentityServiceClient
}

func (m identityMailer) MailTransferNotice(ctx context.Context, memberID, reference, detail, requestID string) error {
	_, err := m.c.NotifyMember(ctx, &identityv1.NotifyMemberRequest{Name: "members/" + memberID, Template: identityv1.MessageTemplate_MESSAGE_TEMPLATE_BUSINESS_TRANSFER,
		Reference: reference, Detail: detail, RequestId: requestID})
	if status.Code(err) == codes.NotFound { // erased (or never a member): nobody to tell
		return nil
	}
	return err
}

func (m identityMailer) MailNotice(ctx context.Context, memberID, reference, detail, requestID string) error {
	_, err := m.c.NotifyMember(ctx, &identityv1.NotifyMemberRequest{Name: "members/" + memberID, Template: identityv1.MessageTemplate_MESSAGE_TEMPLATE_SHARING_NOTICE,
		Reference: reference, Detail: detail, RequestId: requestID})
	if status.Code(err) == codes.NotFound { // erased (or never a member): nobody to tell
		return nil
	}
	return err
}
