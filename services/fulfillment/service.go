// Package fulfillment wires the request fulfillment service: privacy requests (access,
// erasure, child erasure) run as Temporal workflows across identity, preferences and
// sharing, with deadlines, export archives and signed erasure receipts. Behaviour lives in
// internal/request (workflows and activities) and internal/grpcapi (the API).
package fulfillment

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"go.opentelemetry.io/otel/metric"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"gocloud.dev/blob"
	_ "gocloud.dev/blob/fileblob" // file:// archive storage (dev; replicas on a shared volume)
	_ "gocloud.dev/blob/memblob"  // mem:// archive storage (tests, one process)
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	identityv1 "lethe.dev/gen/lethe/identity/v1"
	preferencesv1 "lethe.dev/gen/lethe/preferences/v1"
	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
	subjectv1 "lethe.dev/gen/lethe/subject/v1"
	"lethe.dev/platform/app"
	"lethe.dev/platform/authz"
	"lethe.dev/platform/config"
	"lethe.dev/platform/grpcserver"
	"lethe.dev/platform/observe"
	"lethe.dev/platform/shred"
	"lethe.dev/platform/storage"
	"lethe.dev/platform/temporalclient"
	"lethe.dev/platform/transport"
	"lethe.dev/services/fulfillment/internal/audit"
	"lethe.dev/services/fulfillment/internal/complaint"
	"lethe.dev/services/fulfillment/internal/drp"
	"lethe.dev/services/fulfillment/internal/grpcapi"
	"lethe.dev/services/fulfillment/internal/request"
	"lethe.dev/services/fulfillment/internal/store"
)

// SearchAttributes are the custom search attributes the workflows use; the dev server
// registers them in the namespace.
var SearchAttributes = request.SearchAttributes

// Config is the fulfillment service's configuration.
type Config struct {
	ListenAddr         string
	HTTPListenAddr     string
	DatabaseURL        string
	DataDir            string
	TemporalAddress    string
	TemporalNamespace  string
	IdentityAddress    string
	PreferencesAddress string
	SharingAddress     string
	CoolingOff         time.Duration
	VerificationWindow time.Duration
	ArchiveTTL         time.Duration
	ArchiveBucket      string
	OnwardPollInterval time.Duration
	// ComplaintAckWindow and ComplaintResolveWindow are a complaint's acknowledgement
	// and resolution deadlines.
	ComplaintAckWindow     time.Duration
	ComplaintResolveWindow time.Duration
	KEKURI                 string
	// DRPBusinessID is this business's Data Rights Protocol business-id; DRPAPIBase is
	// where the gateway serves /drp (user_verification_url and results_url start with it).
	DRPBusinessID   string
	DRPAPIBase      string
	DRPCallbackPoll time.Duration
	ReceiptKeyset   string
	DownloadKeyset  string
	TokenKeyset     string
	// DisableGrace is how long a disabled account waits before its erasure starts.
	DisableGrace time.Duration
}

// RegisterFlags registers flags whose defaults come from the environment.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	data := config.Env("LETHE_DATA_DIR", "data")
	fs.StringVar(&c.ListenAddr, "listen", config.Env("FULFILLMENT_LISTEN", "127.0.0.1:7104"), "gRPC listen address (FULFILLMENT_LISTEN)")
	fs.StringVar(&c.HTTPListenAddr, "http-listen", config.Env("FULFILLMENT_HTTP_LISTEN", "127.0.0.1:7114"), "HTTP listen address for signed archive downloads (FULFILLMENT_HTTP_LISTEN)")
	fs.StringVar(&c.DatabaseURL, "database-url", config.Env("FULFILLMENT_DATABASE_URL", "sqlite:"+filepath.Join(data, "fulfillment.db")), "sqlite:PATH or postgres:// URL (FULFILLMENT_DATABASE_URL)")
	fs.StringVar(&c.DataDir, "data-dir", config.Env("FULFILLMENT_DATA_DIR", filepath.Join(data, "fulfillment")), "directory for archives and keys (FULFILLMENT_DATA_DIR)")
	fs.StringVar(&c.TemporalAddress, "temporal-address", config.Env("TEMPORAL_ADDRESS", "127.0.0.1:7233"), "Temporal frontend (TEMPORAL_ADDRESS)")
	fs.StringVar(&c.TemporalNamespace, "temporal-namespace", config.Env("TEMPORAL_NAMESPACE", "lethe"), "Temporal namespace (TEMPORAL_NAMESPACE)")
	fs.StringVar(&c.IdentityAddress, "identity-address", config.Env("IDENTITY_ADDRESS", "127.0.0.1:7101"), "identity gRPC address (IDENTITY_ADDRESS)")
	fs.StringVar(&c.PreferencesAddress, "preferences-address", config.Env("PREFERENCES_ADDRESS", "127.0.0.1:7102"), "preferences gRPC address (PREFERENCES_ADDRESS)")
	fs.StringVar(&c.SharingAddress, "sharing-address", config.Env("SHARING_ADDRESS", "127.0.0.1:7103"), "sharing gRPC address (SHARING_ADDRESS)")
	fs.DurationVar(&c.CoolingOff, "cooling-off", config.EnvDuration("FULFILLMENT_COOLING_OFF", 7*24*time.Hour), "erasure cooling-off period (FULFILLMENT_COOLING_OFF)")
	fs.DurationVar(&c.VerificationWindow, "verification-window", config.EnvDuration("FULFILLMENT_VERIFICATION_WINDOW", 48*time.Hour), "time to confirm a request with the emailed code (FULFILLMENT_VERIFICATION_WINDOW)")
	fs.StringVar(&c.ArchiveBucket, "archive-bucket", config.Env("FULFILLMENT_ARCHIVE_BUCKET", ""), "archive storage as a Go CDK blob URL, e.g. s3://bucket or gs://bucket (with its driver linked); empty: a directory under -data-dir (FULFILLMENT_ARCHIVE_BUCKET)")
	fs.DurationVar(&c.OnwardPollInterval, "onward-poll-interval", config.EnvDuration("FULFILLMENT_ONWARD_POLL_INTERVAL", request.OnwardPollInterval), "how often a processor that has not acknowledged an erasure is checked and re-sent (FULFILLMENT_ONWARD_POLL_INTERVAL)")
	fs.DurationVar(&c.ComplaintAckWindow, "complaint-ack-window", config.EnvDuration("FULFILLMENT_COMPLAINT_ACK_WINDOW", complaint.DefaultAckWindow), "time to acknowledge a member's complaint before it escalates (FULFILLMENT_COMPLAINT_ACK_WINDOW)")
	fs.DurationVar(&c.ComplaintResolveWindow, "complaint-resolve-window", config.EnvDuration("FULFILLMENT_COMPLAINT_RESOLVE_WINDOW", complaint.DefaultResolveWindow), "time to resolve a member's complaint before it escalates (FULFILLMENT_COMPLAINT_RESOLVE_WINDOW)")
	fs.StringVar(&c.DRPBusinessID, "drp-business-id", config.Env("DRP_BUSINESS_ID", "LETHE"), "this business's Data Rights Protocol business-id (DRP_BUSINESS_ID)")
	fs.StringVar(&c.DRPAPIBase, "drp-api-base", config.Env("DRP_API_BASE", "http://127.0.0.1:8080/drp"), "the gateway's public /drp URL, the DRP api_base (DRP_API_BASE)")
	fs.DurationVar(&c.DRPCallbackPoll, "drp-callback-poll", config.EnvDuration("DRP_CALLBACK_POLL", drp.DefaultPollInterval), "how often DRP status callbacks look for missed changes (DRP_CALLBACK_POLL)")
	fs.StringVar(&c.ReceiptKeyset, "receipt-keyset", config.Env("FULFILLMENT_RECEIPT_KEYSET", ""), "Tink Ed25519 keyset that signs erasure receipts, shared by every replica: PATH, file:PATH or file:PATH?kek=KMS-URI; created when missing; empty: -data-dir/receipt-signing.keyset.json (FULFILLMENT_RECEIPT_KEYSET)")
	fs.StringVar(&c.DownloadKeyset, "download-keyset", config.Env("FULFILLMENT_DOWNLOAD_KEYSET", ""), "Tink HMAC keyset that signs download links, shared by every replica (same forms); empty: -data-dir/download-link.keyset.json (FULFILLMENT_DOWNLOAD_KEYSET)")
	fs.StringVar(&c.TokenKeyset, "token-keyset", config.Env("FULFILLMENT_TOKEN_KEYSET", ""), "Tink PRF keyset from which receipt tokens are derived, shared by every replica (same forms); empty: -data-dir/receipt-token.keyset.json (FULFILLMENT_TOKEN_KEYSET)")
	fs.StringVar(&c.KEKURI, "kek-uri", config.Env("FULFILLMENT_KEK_URI", "file:"+filepath.Join(data, "fulfillment", "kek.json")), "key-encryption key wrapping the per-export keys: file:PATH (dev) or a Tink KMS URI (FULFILLMENT_KEK_URI)")
	fs.DurationVar(&c.DisableGrace, "disable-grace", config.EnvDuration("FULFILLMENT_DISABLE_GRACE", request.DefaultDisableGrace), "how long a disabled account can be re-enabled before its erasure starts (FULFILLMENT_DISABLE_GRACE)")
	fs.DurationVar(&c.ArchiveTTL, "archive-ttl", config.EnvDuration("FULFILLMENT_ARCHIVE_TTL", 7*24*time.Hour), "how long export archives and their links live (FULFILLMENT_ARCHIVE_TTL)")
}

// Validate reports what to set.
func (c Config) Validate() error {
	var p config.Problems
	p.Require(c.ListenAddr, "listen", "FULFILLMENT_LISTEN")
	p.Require(c.DatabaseURL, "database-url", "FULFILLMENT_DATABASE_URL")
	p.Require(c.TemporalAddress, "temporal-address", "TEMPORAL_ADDRESS")
	p.Require(c.IdentityAddress, "identity-address", "IDENTITY_ADDRESS")
	p.Require(c.PreferencesAddress, "preferences-address", "PREFERENCES_ADDRESS")
	p.Require(c.SharingAddress, "sharing-address", "SHARING_ADDRESS")
	p.Require(c.DRPBusinessID, "drp-business-id", "DRP_BUSINESS_ID")
	p.Require(c.DRPAPIBase, "drp-api-base", "DRP_API_BASE")
	p.Check(c.CoolingOff >= 0 && c.VerificationWindow > 0 && c.ArchiveTTL > 0 && c.OnwardPollInterval > 0 && c.DisableGrace > 0, "durations must be positive")
	return p.Err()
}

// Listen is the gRPC listen address.
func (c Config) Listen() string { return c.ListenAddr }

// Database names the database and its migrations, for the binary's -migrate.
func (c Config) Database() (string, fs.FS) { return c.DatabaseURL, store.Migrations }

// Service is a built fulfillment service.
type Service struct {
	API        *grpcapi.Server
	DataRights *grpcapi.DataRights
	Activities *request.Activities
	db         *storage.DB
	metrics    metric.Registration
	temporal   client.Client
	conns      []*grpc.ClientConn
	// disableGrace is Config.DisableGrace.
	disableGrace time.Duration
	httpAddr     string
	httpLis      net.Listener
	logger       *slog.Logger
	bucket       *blob.Bucket
	keys         *shred.Keys
}

// New opens the database, keys, service clients and the Temporal client.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Service, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	db, err := storage.Open(ctx, cfg.DatabaseURL, store.Migrations)
	if err != nil {
		return nil, err
	}
	s := &Service{db: db, httpAddr: cfg.HTTPListenAddr, logger: logger}
	fail := func(err error) (*Service, error) { s.Close(); return nil, err }
	if s.metrics, err = request.RegisterMetrics(db, time.Now); err != nil {
		return fail(err)
	}
	receiptURL, linkURL := cfg.ReceiptKeyset, cfg.DownloadKeyset
	if receiptURL == "" {
		receiptURL = filepath.Join(cfg.DataDir, "receipt-signing.keyset.json")
	}
	if linkURL == "" {
		linkURL = filepath.Join(cfg.DataDir, "download-link.keyset.json")
	}
	receipts, err := openReceiptKeys(receiptURL)
	if err != nil {
		return fail(err)
	}
	links, err := openLinkMAC(linkURL)
	if err != nil {
		return fail(err)
	}
	tokenURL := cfg.TokenKeyset
	if tokenURL == "" {
		tokenURL = filepath.Join(cfg.DataDir, "receipt-token.keyset.json")
	}
	tokenKey, err := openTokenKey(tokenURL)
	if err != nil {
		return fail(err)
	}
	sec := transport.FromEnv()
	dial := func(addr string) (*grpc.ClientConn, error) {
		c, err := sec.Dial(addr)
		if err == nil {
			s.conns = append(s.conns, c)
		}
		return c, err
	}
	idc, err := dial(cfg.IdentityAddress)
	if err != nil {
		return fail(err)
	}
	prc, err := dial(cfg.PreferencesAddress)
	if err != nil {
		return fail(err)
	}
	shc, err := dial(cfg.SharingAddress)
	if err != nil {
		return fail(err)
	}
	tc, err := temporalclient.Dial(cfg.TemporalAddress, cfg.TemporalNamespace, logger)
	if err != nil {
		return fail(fmt.Errorf("fulfillment: %w", err))
	}
	s.temporal = tc
	bucketURL := cfg.ArchiveBucket
	if bucketURL == "" {
		dir, err := filepath.Abs(filepath.Join(cfg.DataDir, "archives"))
		if err != nil {
			return fail(err)
		}
		// Folders 0700; temporary files next to their object (not in /tmp); no sidecar
		// files; every object is made 0600 as it is written (request.Archives).
		bucketURL = "file://" + filepath.ToSlash(dir) + "?create_dir=1&dir_file_mode=0700&no_tmp_dir=1&metadata=skip"
	}
	if s.bucket, err = blob.OpenBucket(ctx, bucketURL); err != nil {
		return fail(fmt.Errorf("fulfillment: archive storage (s3://, gs:// and azblob:// need the binary built with -tags %s): %w", CloudBlobTags, err))
	}
	kek, err := shred.OpenKEK(cfg.KEKURI)
	if err != nil {
		return fail(err)
	}
	if s.keys, err = shred.Open(ctx, db, kek); err != nil {
		return fail(err)
	}
	archives := &request.Archives{Bucket: s.bucket, Keys: s.keys}
	s.Activities = &request.Activities{
		DB: db, Identity: identityv1.NewIdentityServiceClient(idc), Preferences: preferencesv1.NewPreferencesServiceClient(prc), Sharing: sharingv1.NewSharingServiceClient(shc),
		Subjects: map[string]subjectv1.DataSubjectServiceClient{
			"identity": subjectv1.NewDataSubjectServiceClient(idc), "preferences": subjectv1.NewDataSubjectServiceClient(prc), "sharing": subjectv1.NewDataSubjectServiceClient(shc),
		},
		Archives: archives, Temporal: tc, Signer: receipts.signer, KeyID: receipts.keyID, Now: time.Now,
	}
	s.API = &grpcapi.Server{
		DB: db, Temporal: tc, Identity: s.Activities.Identity, Preferences: s.Activities.Preferences, Sharing: s.Activities.Sharing, CoolingOff: cfg.CoolingOff, VerificationWindow: cfg.VerificationWindow,
		ArchiveTTL: cfg.ArchiveTTL, OnwardPollInterval: cfg.OnwardPollInterval, DownloadMAC: links, ReceiptKeys: receipts.published, Now: time.Now, Archives: archives,
		TokenKey: tokenKey, Logger: logger,
		Audit: &audit.Store{DB: db, Now: time.Now}, ServiceToken: sec.ServiceToken,
		Complaints: &complaint.Store{DB: db, Now: time.Now}, ComplaintAckWindow: cfg.ComplaintAckWindow, ComplaintResolveWindow: cfg.ComplaintResolveWindow,
	}
	s.Activities.Complaints = s.API.Complaints
	s.Activities.Own = s.API
	poll := cfg.DRPCallbackPoll
	if poll <= 0 {
		poll = drp.DefaultPollInterval
	}
	s.DataRights = &grpcapi.DataRights{API: s.API, Store: &drp.Store{DB: db}, Preferences: s.Activities.Preferences,
		BusinessID: cfg.DRPBusinessID, APIBase: strings.TrimSuffix(cfg.DRPAPIBase, "/"), CallbackPoll: poll}
	s.Activities.StateChanged = s.DataRights.PrivacyRequestChanged
	s.Activities.FileErasure = s.fileDisabledErasure
	s.disableGrace = cfg.DisableGrace
	return s, nil
}

// Build is New as an app.Service, for app.Main.
func Build(ctx context.Context, cfg *Config, logger *slog.Logger) (app.Service, error) {
	return New(ctx, *cfg, logger)
}

// AuditRecorder appends this service's operator actions straight to its audit log.
func (s *Service) AuditRecorder() authz.Recorder { return s.API.Audit }

// Register registers FulfillmentService.
func (s *Service) Register(srv *grpcserver.Server) {
	fulfillmentv1.RegisterFulfillmentServiceServer(srv, s.API)
	fulfillmentv1.RegisterDataRightsServiceServer(srv, s.DataRights)
}

// ServeHTTP serves signed archive downloads on lis until ctx is done.
func (s *Service) ServeHTTP(ctx context.Context, lis net.Listener) error {
	srv := &http.Server{Handler: s.API.DownloadHandler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Run runs the workflow worker and the download server until ctx is done. The download
// listener is taken from HTTPListenAddr unless SetHTTPListener gave one.
func (s *Service) Run(ctx context.Context) error {
	lis := s.httpLis
	if lis == nil {
		var err error
		if lis, err = net.Listen("tcp", s.httpAddr); err != nil {
			return fmt.Errorf("fulfillment: download listener: %w", err)
		}
	}
	w := request.NewWorker(s.temporal, s.Activities)
	w.RegisterWorkflow(drp.StatusCallbacks)
	complaint.Register(w, &complaint.Activities{Store: s.API.Complaints, Identity: s.Activities.Identity})
	w.RegisterActivity(s.DataRights.CallbackActivities())
	if err := w.Start(); err != nil {
		return err
	}
	defer w.Stop()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.ServeHTTP(ctx, lis) })
	g.Go(func() error { s.consumeChildReports(ctx); return nil })
	g.Go(func() error { s.consumeDisabledAccounts(ctx); return nil })
	g.Go(func() error { s.reconcile(ctx); return nil })
	g.Go(func() error { s.ensureRetentionSchedule(ctx); return nil })
	if v := s.keys.Vacuumer(); v != nil {
		g.Go(func() error { v.Run(ctx, VacuumInterval); return nil })
	}
	return g.Wait()
}

// consumeChildReports turns identity's child_reported events into expedited erasure
// requests (verified by the report, no cooling-off). Each event is acknowledged only
// after its request exists; request ids derived from the event make retries harmless.
func (s *Service) consumeChildReports(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		res, err := s.Activities.Identity.ListMemberEvents(ctx, &identityv1.ListMemberEventsRequest{Kind: "child_reported", PageSize: 100})
		if err != nil {
			continue // identity unavailable: try again next tick
		}
		for _, e := range res.GetEvents() {
			_, err := s.API.CreatePrivacyRequest(ctx, &fulfillmentv1.CreatePrivacyRequestRequest{
				Parent: e.GetMember(), RequestId: "child-report-" + strings.TrimPrefix(e.GetName(), "memberEvents/"),
				PrivacyRequest: &fulfillmentv1.PrivacyRequest{Kind: fulfillmentv1.RequestKind_REQUEST_KIND_CHILD_ERASURE, Origin: fulfillmentv1.RequestOrigin_REQUEST_ORIGIN_OPERATOR},
			})
			if err != nil {
				s.logger.Warn("child erasure not started; will retry", "event", e.GetName())
				continue
			}
			_, _ = s.Activities.Identity.AcknowledgeMemberEvent(ctx, &identityv1.AcknowledgeMemberEventRequest{Name: e.GetName()})
		}
	}
}

// Reconciler timing: a filing is given ReconcileGrace to start its own workflow before
// the reconciler starts it; the reconciler looks every ReconcileInterval.
const (
	ReconcileGrace    = 10 * time.Second
	ReconcileInterval = 5 * time.Second
)

// reconcile starts the workflows of filings that crashed before starting them and that
// no client retried (see grpcapi.Server.Reconcile).
func (s *Service) reconcile(ctx context.Context) {
	t := time.NewTicker(ReconcileInterval)
	defer t.Stop()
	for {
		if n, err := s.API.Reconcile(ctx, ReconcileGrace); err != nil && ctx.Err() == nil {
			s.logger.Warn("reconciler failed; will retry", "error", err)
		} else if n > 0 {
			s.logger.Info("reconciler started workflows of interrupted filings", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ensureRetentionSchedule creates the Temporal schedule that runs request.Retention
// every hour, unless it exists (every replica tries; the first wins). Temporal is
// retried until it answers.
func (s *Service) ensureRetentionSchedule(ctx context.Context) {
	for {
		_, err := s.temporal.ScheduleClient().Create(ctx, client.ScheduleOptions{
			ID:   request.RetentionScheduleID,
			Spec: client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: request.RetentionInterval}}},
			Action: &client.ScheduleWorkflowAction{ID: request.RetentionScheduleID, Workflow: request.Retention, TaskQueue: request.TaskQueue,
				WorkflowExecutionTimeout: time.Hour},
			Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
		})
		if err == nil || errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
			return
		}
		s.logger.Warn("retention schedule not created yet; will retry", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Second):
		}
	}
}

// VerifyErased runs an erasure's verification sweep again (operators, tests): every
// service's report plus fulfillment's own archives, keys and links. It fails naming
// each place that still holds the member's data without a legal basis.
func (s *Service) VerifyErased(ctx context.Context, requestID, memberID string) error {
	leftovers, err := request.Sweep(ctx, s.Activities, request.RequestRef{RequestID: requestID, MemberID: memberID})
	if err != nil {
		return err
	}
	if len(leftovers) > 0 {
		return fmt.Errorf("fulfillment: data still held after erasure: %v", leftovers)
	}
	return nil
}

// VacuumInterval is how often, at most, the key table is vacuumed on PostgreSQL after
// keys were destroyed (one VACUUM per batch of erasures and expiries).
const VacuumInterval = 10 * time.Second

// SetHTTPListener makes Run serve downloads on lis (the dev stack binds ports first).
func (s *Service) SetHTTPListener(lis net.Listener) { s.httpLis = lis }

// Close closes clients and the database.
func (s *Service) Close() error {
	if s.metrics != nil {
		s.metrics.Unregister()
	}
	if s.temporal != nil {
		s.temporal.Close()
	}
	for _, c := range s.conns {
		c.Close()
	}
	if s.bucket != nil {
		s.bucket.Close()
	}
	return s.db.Close()
}

// ReadyChecks is what /readyz checks: the database and Temporal answer.
func (s *Service) ReadyChecks() []observe.Check {
	return []observe.Check{observe.DatabaseCheck(s.db), {Name: "temporal", Fn: func(ctx context.Context) error {
		_, err := s.temporal.CheckHealth(ctx, &client.CheckHealthRequest{})
		return err
	}}}
}
